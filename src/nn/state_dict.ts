/**
 * Loading a state dict: match keys, check shapes, then copy. Every problem is collected into
 * one error (missing keys, unexpected keys with the closest expected name, shape mismatches
 * with both shapes) and nothing is copied unless all is well.
 */
import { noGrad } from '../autograd/grad_mode.ts';
import { copyInPlace } from '../ops/elementwise.ts';
import { fmt, sameShape } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';

export interface LoadResult {
  /** Keys of the module that the state dict did not have (empty under strict). */
  missingKeys: string[];
  /** Keys of the state dict that the module does not have (empty under strict). */
  unexpectedKeys: string[];
}

const LISTED = 10;

/** Levenshtein distance, stopping early once it must exceed `limit`. */
export function editDistance(a: string, b: string, limit = Number.POSITIVE_INFINITY): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      const v = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      cur.push(v);
      best = Math.min(best, v);
    }
    if (best > limit) return limit + 1;
    prev = cur;
  }
  return prev[b.length];
}

/** The candidate closest to `key` when it is close enough to be a likely typo. */
export function closestKey(key: string, candidates: readonly string[]): string | null {
  const limit = Math.max(2, Math.floor(key.length / 4));
  let best: string | null = null;
  let bestD = limit + 1;
  for (const c of candidates) {
    const d = editDistance(key, c, bestD - 1);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

/** A prefix that every unexpected key carries over a model key (a 'module.' from a wrapper), or the reverse. */
function commonPrefixHint(missing: string[], unexpected: string[]): string {
  if (missing.length === 0 || missing.length !== unexpected.length) return '';
  const first = unexpected[0];
  for (const m of missing) {
    if (first.endsWith(m) && first.length > m.length && first[first.length - m.length - 1] === '.') {
      const p = first.slice(0, first.length - m.length);
      const want = new Set(missing);
      if (unexpected.every((u) => u.startsWith(p) && want.has(u.slice(p.length)))) return `; every checkpoint key has an extra prefix "${p}"`;
    }
    if (m.endsWith(first) && m.length > first.length && m[m.length - first.length - 1] === '.') {
      const p = m.slice(0, m.length - first.length);
      const got = new Set(unexpected);
      if (missing.every((k) => k.startsWith(p) && got.has(k.slice(p.length)))) return `; every model key has a prefix "${p}" that the checkpoint lacks`;
    }
  }
  return '';
}

function list(keys: string[], show: (k: string) => string): string {
  const head = keys.slice(0, LISTED).map(show).join(', ');
  return keys.length > LISTED ? `${head}, ... and ${keys.length - LISTED} more` : head;
}

export function loadInto(
  owner: string,
  target: Record<string, Tensor>,
  source: Record<string, Tensor> | Map<string, Tensor>,
  strict: boolean,
  hint: (key: string, savedShape: readonly number[]) => string | null = () => null,
): LoadResult {
  if (source === null || typeof source !== 'object') throw new Error(`loadStateDict: expected an object or Map of tensors, got ${source}`);
  const entries: [string, unknown][] = source instanceof Map ? [...source] : Object.entries(source);
  const src = new Map(entries);
  const want = new Map(Object.entries(target));
  const missing = [...want.keys()].filter((k) => !src.has(k));
  const unexpected = [...src.keys()].filter((k) => !want.has(k));
  const mismatched: string[] = [];
  const notTensors: string[] = [];
  for (const [k, v] of src) {
    const t = want.get(k);
    if (!t) continue;
    if (!(v instanceof Tensor) || v.disposed) notTensors.push(k);
    else if (!sameShape(v.shape, t.shape)) {
      const why = hint(k, v.shape);
      mismatched.push(`"${k}": checkpoint ${fmt(v.shape)}, model ${fmt(t.shape)}${why ? ` (${why})` : ''}`);
    }
  }
  const problems: string[] = [];
  if (strict && missing.length) problems.push(`missing key(s) (${missing.length}): ${list(missing, (k) => `"${k}"`)}`);
  if (strict && unexpected.length) {
    // Only a bounded number of suggestions: a checkpoint of another model could pair thousands.
    const hint = commonPrefixHint(missing, unexpected);
    problems.push(
      `unexpected key(s) (${unexpected.length}): ${list(unexpected, (k) => {
        const near = hint ? null : closestKey(k, missing.length ? missing : [...want.keys()]);
        return near ? `"${k}" (did you mean "${near}"?)` : `"${k}"`;
      })}${hint}`,
    );
  }
  if (mismatched.length) problems.push(`shape mismatch (${mismatched.length}): ${list(mismatched, (s) => s)}`);
  if (notTensors.length) problems.push(`not a live Tensor: ${list(notTensors, (k) => `"${k}"`)}`);
  if (problems.length) throw new Error(`loadStateDict into ${owner}: ${problems.join('; ')}`);
  noGrad(() => {
    for (const [k, v] of src) {
      const t = want.get(k);
      if (t) copyInPlace(t, v as Tensor);
    }
  });
  return { missingKeys: strict ? [] : missing, unexpectedKeys: strict ? [] : unexpected };
}
