/**
 * Checking option objects and config sections: unknown keys are rejected with the closest valid
 * name suggested, never silently ignored; numbers must be finite and in range.
 */

/** Edit distance (insert, delete, substitute, transpose adjacent), case-insensitive. */
function distance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The candidate nearest to `name` (ignoring case, `_` and `-`), or null when none is close. */
export function closest(name: string, candidates: readonly string[]): string | null {
  const norm = (s: string) => s.replace(/[_-]/g, '');
  let best: string | null = null;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const dist = Math.min(distance(name, c), distance(norm(name), norm(c)));
    if (dist < bestD) {
      bestD = dist;
      best = c;
    }
  }
  return best !== null && bestD <= Math.max(2, Math.floor(best.length / 3)) ? best : null;
}

/** ` (did you mean "x"?)` or, when nothing is close, the list of valid names. */
export function suggestion(name: string, candidates: readonly string[]): string {
  const c = closest(name, candidates);
  return c ? ` (did you mean "${c}"?)` : ` (valid: ${candidates.join(', ')})`;
}

/** Throws naming the first key of `obj` that is not in `allowed`. */
export function checkKeys(obj: object, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) throw new Error(`${where}: unknown key "${key}"${suggestion(key, allowed)}`);
  }
}

/** Throws unless `v` is a finite number within [lo, hi] (`hiOpen`: below hi). */
export function checkRange(v: unknown, name: string, where: string, lo: number, hi = Number.POSITIVE_INFINITY, hiOpen = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || (hiOpen ? v >= hi : v > hi)) {
    const range =
      hi !== Number.POSITIVE_INFINITY ? ` in [${lo}, ${hi}${hiOpen ? ')' : ']'}` : lo !== Number.NEGATIVE_INFINITY ? ` >= ${lo}` : '';
    throw new Error(`${where}: ${name} must be a finite number${range}, got ${String(v)}`);
  }
  return v;
}

export function checkBool(v: unknown, name: string, where: string): boolean {
  if (typeof v !== 'boolean') throw new Error(`${where}: ${name} must be a boolean, got ${String(v)}`);
  return v;
}
