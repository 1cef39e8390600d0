/**
 * Reading a timed launch census (`cudaCensus(fn, { timing: true })`): where a step's device time
 * goes, by call site, and how much of the step's wall time no counted op covers (host-bound time,
 * idle device, or work queued outside the census such as NCCL on the communication stream).
 */
import type { CensusEntry } from './census.ts';

/** The device milliseconds of all timed entries, and how many ops were timed and not. */
export function censusDeviceTotals(entries: CensusEntry[]): { ms: number; timed: number; untimed: number } {
  let ms = 0;
  let timed = 0;
  let untimed = 0;
  for (const e of entries) {
    if (e.kind === 'note' || e.kind === 'malloc' || e.kind === 'sync') continue;
    ms += e.deviceMs ?? 0;
    timed += e.timed ?? 0;
    untimed += e.count - (e.timed ?? 0);
  }
  return { ms, timed, untimed };
}

/**
 * The `top` sites by device time (default 25): milliseconds, share of `wallMs` (else of the
 * timed sum), count, mean µs per timed op (many tiny ops point at launch cost), kind, what and site; then the sum of op times against the wall time. `per`
 * divides times and counts (e.g. steps). Throws when the entries were not timed.
 * @example
 * const { entries } = cudaCensus(() => step(), { timing: true });
 * console.log(formatCensusTime(entries, { wallMs: 46.8, top: 25 }));
 */
export function formatCensusTime(entries: CensusEntry[], opts: { wallMs?: number; top?: number; per?: number } = {}): string {
  if (entries.some((e) => e.kind !== 'note' && e.deviceMs === undefined)) {
    throw new Error('formatCensusTime: the entries carry no deviceMs (take the census with cudaCensus(fn, { timing: true }))');
  }
  const per = opts.per ?? 1;
  const tot = censusDeviceTotals(entries);
  const base = opts.wallMs ?? tot.ms / per;
  const rows = entries
    .filter((e) => (e.deviceMs ?? 0) > 0 || (e.timed ?? 0) > 0)
    .sort((a, b) => (b.deviceMs ?? 0) - (a.deviceMs ?? 0) || a.site.localeCompare(b.site))
    .slice(0, opts.top ?? 25);
  const what = (e: CensusEntry) => `${e.name}${e.label ? ` [${e.label}]` : ''}`;
  const w = Math.max(4, ...rows.map((e) => what(e).length));
  const num = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2));
  const pct = (ms: number) => (base > 0 ? `${((ms / base) * 100).toFixed(1)}%` : '-');
  const lines = [`${'ms'.padStart(9)}  ${'share'.padStart(6)}  ${'count'.padStart(7)}  ${'µs/op'.padStart(8)}  ${'kind'.padEnd(7)}  ${'what'.padEnd(w)}  site`];
  let shown = 0;
  for (const e of rows) {
    const ms = (e.deviceMs ?? 0) / per;
    shown += ms;
    const us = e.timed ? ((e.deviceMs ?? 0) / e.timed) * 1e3 : 0;
    lines.push(
      `${ms.toFixed(3).padStart(9)}  ${pct(ms).padStart(6)}  ${num(e.count / per).padStart(7)}  ${us.toFixed(1).padStart(8)}  ${e.kind.padEnd(7)}  ${what(e).padEnd(w)}  ${e.site}`,
    );
  }
  const sum = tot.ms / per;
  lines.push(`${(sum - shown).toFixed(3).padStart(9)}  ${pct(sum - shown).padStart(6)}  the other sites`);
  let last = `sum of op times ${sum.toFixed(3)} ms over ${num(tot.timed / per)} timed ops (${num(tot.untimed / per)} counted, not timed)`;
  if (opts.wallMs !== undefined) {
    const gap = opts.wallMs - sum;
    last += `; step wall ${opts.wallMs.toFixed(3)} ms: gap ${gap.toFixed(3)} ms (${pct(gap)}) is host-bound or idle device time, or work the census does not see`;
  }
  lines.push(last);
  return lines.join('\n');
}
