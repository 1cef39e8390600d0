/**
 * The launch census: what a piece of GPU work costs in launches, library calls and copies,
 * counted by the addon at each call site (native/cuda/census.{h,cc}) while switched on. It runs
 * the same on a GPU and on the emulated device, so wasted launches can be found and guarded
 * against without timing anything.
 */
import { native } from '../native.ts';

/**
 * What a census entry counts. `kernel`: our launches (MT_LAUNCH); `library`: cuBLASLt, cuDNN and
 * CUB calls; `memcpy`, `memset`: runtime copies and fills; `malloc`: allocator misses that reach
 * cudaMalloc; `graph`: replays of a CUDA graph (one host call for all of its nodes, cuda_graph.ts);
 * `sync`: explicit synchronizations; `note`: a remark on the launch counted beside it
 * (a matmul packing an operand), not a launch itself.
 */
export type CensusKind = 'kernel' | 'library' | 'memcpy' | 'memset' | 'graph' | 'malloc' | 'sync' | 'note';

/** One call site's totals. */
export interface CensusEntry {
  kind: CensusKind;
  /** The kernel as named at its launch, or the call ('cublasLtMatmul bf16'). */
  name: string;
  /** `cuda/copy.cu:71`: the site below native/. */
  site: string;
  /** The launcher's description ('bf16->f32 strided' for a copy), or ''. */
  label: string;
  count: number;
  /** Bytes of the operands, where the site knows them (0 otherwise). */
  bytes: number;
  /** Threads launched in all (kernels). */
  threads: number;
  /**
   * Timed censuses only (`cudaCensus(fn, { timing: true })`): the device milliseconds of this
   * site's ops, each between a CUDA event recorded just before it was queued on the compute stream
   * and one just after (`formatCensusTime` in census_time.ts prints them).
   */
  deviceMs?: number;
  /** Timed censuses only: how many of `count` were timed (ops queued on another stream are not). */
  timed?: number;
}

/** Totals by kind; `deviceOps` counts what the device queues: kernels, library calls, copies, memsets. */
export interface CensusTotals {
  kernel: number;
  library: number;
  memcpy: number;
  memset: number;
  graph: number;
  malloc: number;
  sync: number;
  deviceOps: number;
}

function binding(): (cmd: string, timed?: boolean) => CensusEntry[] | undefined {
  if (typeof native.cudaCensus !== 'function') throw new Error('cudaCensus: this addon was built without CUDA (no launches to count)');
  return native.cudaCensus;
}

/**
 * Counts every launch, library call and copy queued while `fn` runs, on every device (a census
 * already running is restarted). Counting costs a map update per launch; off, one branch.
 * With `timing`, each device op on a compute stream is also timed between two CUDA events (from
 * a pool created once), and the entries carry `deviceMs` and `timed`; the events are read after
 * one wait for each device at the end. Counts are the same either way.
 * @example
 * const { result, entries } = cudaCensus(() => matmul(a, b));
 * console.log(formatCensus(entries));
 * const timed = cudaCensus(() => step(), { timing: true }).entries;
 * console.log(formatCensusTime(timed, { wallMs: 46.8 }));
 */
export function cudaCensus<T>(fn: () => T, opts: { timing?: boolean } = {}): { result: T; entries: CensusEntry[] } {
  const census = binding();
  census('start', opts.timing === true);
  let entries: CensusEntry[] | undefined;
  try {
    const result = fn();
    entries = census('stop');
    return { result, entries: entries ?? [] };
  } finally {
    if (!entries) census('stop');
  }
}

/**
 * Sums entries by kind.
 * @example
 * censusTotals(cudaCensus(step).entries).deviceOps;
 */
export function censusTotals(entries: CensusEntry[]): CensusTotals {
  const t: CensusTotals = { kernel: 0, library: 0, memcpy: 0, memset: 0, graph: 0, malloc: 0, sync: 0, deviceOps: 0 };
  for (const e of entries) {
    if (e.kind === 'note') continue;
    t[e.kind] += e.count;
    if (e.kind !== 'malloc' && e.kind !== 'sync') t.deviceOps += e.count;
  }
  return t;
}

function mib(bytes: number): string {
  return bytes === 0 ? '' : bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

/**
 * A table of the entries, most frequent first, then the totals by kind; `per` divides every
 * count (e.g. steps), `top` keeps that many rows.
 * @example
 * console.log(formatCensus(entries, { top: 20 }));
 */
export function formatCensus(entries: CensusEntry[], opts: { per?: number; top?: number } = {}): string {
  const per = opts.per ?? 1;
  const rows = [...entries].sort((a, b) => b.count - a.count || a.site.localeCompare(b.site)).slice(0, opts.top ?? entries.length);
  const what = (e: CensusEntry) => `${e.name}${e.label ? ` [${e.label}]` : ''}`;
  const w = Math.max(4, ...rows.map((e) => what(e).length));
  const s = Math.max(4, ...rows.map((e) => e.site.length));
  const lines = [`${'count'.padStart(7)}  ${'kind'.padEnd(7)}  ${'what'.padEnd(w)}  ${'site'.padEnd(s)}  bytes`];
  for (const e of rows) {
    const c = e.count / per;
    lines.push(`${(Number.isInteger(c) ? String(c) : c.toFixed(2)).padStart(7)}  ${e.kind.padEnd(7)}  ${what(e).padEnd(w)}  ${e.site.padEnd(s)}  ${mib(e.bytes / per)}`);
  }
  const t = censusTotals(entries);
  const k = (n: number) => (Number.isInteger(n / per) ? String(n / per) : (n / per).toFixed(2));
  lines.push(
    `device ops ${k(t.deviceOps)}: kernels ${k(t.kernel)}, library ${k(t.library)}, memcpy ${k(t.memcpy)}, memset ${k(t.memset)}; ` +
      `cudaMalloc ${k(t.malloc)}, syncs ${k(t.sync)}`,
  );
  return lines.join('\n');
}
