/**
 * The collective checker (`MESHTRAIN_CHECK_COLLECTIVES=1`): before each collective, the ranks of
 * the group exchange what they are about to call — name, shapes, dtype — and where from; the
 * first divergence raises an error naming both ranks and both call sites, instead of a hang or
 * silently wrong numbers.
 */
import path from 'node:path';
import { fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';

export function checkingEnabled(): boolean {
  const v = process.env.MESHTRAIN_CHECK_COLLECTIVES;
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

export function describeTensor(t: Tensor): string {
  return `${fmt(t.shape)} ${t.dtype}`;
}

/** The first stack frame outside src/dist/: where the user called the collective. */
export function callSite(): string {
  const lines = (new Error().stack ?? '').split('\n').slice(1);
  const here = `${path.sep}src${path.sep}dist${path.sep}`;
  for (const l of lines) {
    if (l.includes(here) || l.includes('node:internal')) continue;
    const m = /\(?((?:file:\/\/)?[^()\s]+:\d+:\d+)\)?\s*$/.exec(l.trim());
    if (!m) continue;
    const file = m[1].replace(/^file:\/\//, '');
    const rel = path.relative(process.cwd(), file);
    return rel.startsWith('..') ? file : rel;
  }
  return 'unknown call site';
}
