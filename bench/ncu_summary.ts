/**
 * Sums an Nsight Compute CSV (`ncu --csv --metrics gpu__time_duration.sum --log-file FILE`, as
 * scripts/gpu_check.sh's ncu step writes it) by kernel: total device ms, launches, share of the
 * sum, the top rows; appends the table to $OUT/profile.txt when $OUT is set. ncu times each kernel
 * alone (serialized, replayed if a metric needs it), so the sum is the kernels' own time without
 * overlap or idle gaps: compare it with the timed census in the same profile.txt.
 *   node --import tsx bench/ncu_summary.ts FILE [--top 25]
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/** One CSV line's fields (RFC 4180 quoting: "" inside quotes is one quote; names may hold commas). */
export function csvFields(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

const UNIT_MS: Record<string, number> = { ns: 1e-6, nsecond: 1e-6, us: 1e-3, usecond: 1e-3, ms: 1, msecond: 1, s: 1e3, second: 1e3 };

/** Per kernel name (its parameter list dropped): total ms and launches, most time first. */
export function ncuKernelTimes(csv: string, metric = 'gpu__time_duration.sum'): { kernel: string; ms: number; count: number }[] {
  const lines = csv.split(/\r?\n/).filter((l) => l.startsWith('"'));
  const header = lines.findIndex((l) => csvFields(l)[0] === 'ID');
  if (header < 0) throw new Error('ncu_summary: no CSV header ("ID", ...) in the file; did ncu profile any kernel?');
  const cols = csvFields(lines[header]);
  const col = (name: string) => {
    const i = cols.indexOf(name);
    if (i < 0) throw new Error(`ncu_summary: the CSV has no "${name}" column (columns: ${cols.join(', ')})`);
    return i;
  };
  const [kName, mName, mUnit, mValue] = [col('Kernel Name'), col('Metric Name'), col('Metric Unit'), col('Metric Value')];
  const by = new Map<string, { ms: number; count: number }>();
  for (const l of lines.slice(header + 1)) {
    const f = csvFields(l);
    if (f[mName] !== metric) continue;
    const scale = UNIT_MS[f[mUnit]];
    if (scale === undefined) throw new Error(`ncu_summary: unknown unit "${f[mUnit]}" for ${metric}`);
    const v = Number(f[mValue].replace(/,/g, ''));
    if (!Number.isFinite(v)) throw new Error(`ncu_summary: "${f[mValue]}" is not a number (${f[kName]})`);
    // The parameter list dropped; "(anonymous namespace)" is part of the name, not a list.
    const kernel = f[kName].replace(/\(anonymous namespace\)/g, '{anonymous}').replace(/\(.*$/, '').trim() || f[kName];
    const cur = by.get(kernel) ?? { ms: 0, count: 0 };
    cur.ms += v * scale;
    cur.count++;
    by.set(kernel, cur);
  }
  return [...by.entries()].map(([kernel, v]) => ({ kernel, ...v })).sort((a, b) => b.ms - a.ms);
}

/** The table: ms, share of the sum, launches, kernel (cut to 110 characters); the sum last. */
export function formatNcuTimes(rows: { kernel: string; ms: number; count: number }[], top = 25): string {
  const sum = rows.reduce((s, r) => s + r.ms, 0);
  const launches = rows.reduce((s, r) => s + r.count, 0);
  const pct = (ms: number) => `${sum > 0 ? ((ms / sum) * 100).toFixed(1) : '0.0'}%`;
  const lines = [`${'ms'.padStart(9)}  ${'share'.padStart(6)}  ${'count'.padStart(6)}  kernel`];
  for (const r of rows.slice(0, top)) lines.push(`${r.ms.toFixed(3).padStart(9)}  ${pct(r.ms).padStart(6)}  ${String(r.count).padStart(6)}  ${r.kernel.slice(0, 110)}`);
  const rest = rows.slice(top).reduce((s, r) => s + r.ms, 0);
  if (rows.length > top) lines.push(`${rest.toFixed(3).padStart(9)}  ${pct(rest).padStart(6)}  ${''.padStart(6)}  the other ${rows.length - top} kernels`);
  lines.push(`ncu: ${launches} kernel launches, ${rows.length} distinct kernels, ${sum.toFixed(3)} ms of kernel time in all`);
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const file = process.argv[2];
  const i = process.argv.indexOf('--top');
  const top = i >= 0 ? Number(process.argv[i + 1]) : 25;
  if (!file || !existsSync(file)) {
    console.log(`ncu_summary: no CSV at ${file ?? '(none given)'}`);
    process.exit(1);
  }
  const text = `== ncu, one GPT-2 step (gpu__time_duration.sum per kernel, ${file.split('/').pop()})\n${formatNcuTimes(ncuKernelTimes(readFileSync(file, 'utf8')), top)}\n`;
  console.log(text);
  if (process.env.OUT) appendFileSync(`${process.env.OUT}/profile.txt`, `\n${text}`);
}
