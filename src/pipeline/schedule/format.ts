import { formatAction, type Schedule } from './action.ts';

/**
 * The Step×Rank grid: one row per step (position in the rank's list), one column per rank. A
 * marked cell is printed in brackets (the validator marks the first violation).
 */
export function formatGrid(s: Schedule, mark?: { rank: number; step: number }): string {
  const steps = Math.max(0, ...s.actions.map((row) => row.length));
  const cell = (r: number, i: number): string => {
    const a = s.actions[r][i];
    const text = a ? formatAction(a) : '';
    return mark && mark.rank === r && mark.step === i ? `[${text || ' '}]` : text;
  };
  const header = ['step', ...s.actions.map((_, r) => `rank ${r}`)];
  const rows = Array.from({ length: steps }, (_, i) => [String(i), ...s.actions.map((_, r) => cell(r, i))]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
  const line = (cells: string[]): string => cells.map((c, j) => (j === 0 ? c.padStart(widths[j]) : c.padEnd(widths[j]))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}
