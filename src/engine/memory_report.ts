/**
 * The engine's memory report: this rank's bytes per memory tag (current and peak, from the native
 * accounting) next to what ZeRO's analysis predicts for the stage (Rajbhandari et al. 2020, §3):
 * with Ψ trained parameters, N data-parallel ranks, b bytes per weight and gradient element (2 for
 * bf16/f16, 4 for f32) and K bytes of optimizer state per parameter (Adam: 8, plus the fp32
 * master's 4 under mixed precision, so the paper's K = 12), a rank holds
 *   stage 0: bΨ + bΨ + KΨ            (mixed-precision Adam: 16Ψ; fp32 Adam: 16Ψ as 4 + 4 + 8)
 *   stage 1: bΨ + bΨ + KΨ/N          (4Ψ + 12Ψ/N)
 *   stage 2: bΨ + bΨ/N + KΨ/N        (2Ψ + 14Ψ/N)
 *   stage 3: bΨ/N + bΨ/N + KΨ/N      (16Ψ/N)
 * split per tag: param (the weights), grad (the gradients), optim (masters + state). The
 * implementation adds buffers the formula leaves out, listed by name (stage 1's reduced gradient
 * partition, stage 2's gradient buckets, stage 3's persistent and gathered parameters), so
 * measured ≈ formula + buffers; padding to a multiple of N adds at most N − 1 elements per flat
 * group (stage 3: per parameter). With zero_optimization.offload_optimizer the optim term lives
 * elsewhere: `cpu` in the separately accounted host pool (`offloadPool`, memoryStats' 'cpu-offload'),
 * `nvme` in files under nvme_path (resident: only the sub-group buffers during a step); likewise
 * the stage-3 param term with offload_param.
 */

import { Optimizer } from '../optim/optimizer.ts';
import { SGD } from '../optim/sgd.ts';
import { itemSize } from '../tensor/dtype.ts';
import { CPU_OFFLOAD_POOL, MEMORY_TAGS, type MemoryCounter, type MemoryTag, memoryStats } from '../tensor/storage.ts';
import { ZeroStage12 } from '../zero/stage12.ts';
import type { EngineBackend, EngineZero } from './backend.ts';
import type { Engine } from './engine.ts';

/** Where a formula term is held: the device, the CPU offload pool, or nvme files. */
export type MemoryLocation = 'device' | 'cpu-offload' | 'nvme';

const locationOf = (device: string): MemoryLocation => (device === 'cpu' ? 'cpu-offload' : device === 'nvme' ? 'nvme' : 'device');

/** A buffer the implementation holds beyond the formula's terms. */
export interface MemoryBuffer {
  name: string;
  tag: MemoryTag;
  bytes: number;
  /** How its size comes about (e.g. "2 x 5000 f32 elements"). */
  note: string;
}

/** The tags the formula speaks about. */
export type FormulaTag = 'param' | 'grad' | 'optim';

/** One term of the formula: `bytesPerParam · Ψ`, divided by N when partitioned. */
export interface FormulaTerm {
  tag: FormulaTag;
  bytesPerParam: number;
  partitioned: boolean;
  bytes: number;
}

export interface MemoryReport {
  rank: number;
  /** N: the data-parallel group's size. */
  dpSize: number;
  stage: 0 | 1 | 2 | 3;
  /** Ψ: trained parameters (elements, shared ones once). */
  psi: number;
  /** The weights' dtype (bf16/f16 under mixed precision). */
  dtype: string;
  /** The optimizer type (Adam, AdamW, SGD) and its state buffers per parameter. */
  optimizer: { type: string; states: number; master: boolean };
  /** The formula, e.g. "2Ψ + 14Ψ/N", its terms per tag, and its bytes at this Ψ and N. */
  formula: { text: string; terms: FormulaTerm[]; bytes: number };
  buffers: MemoryBuffer[];
  /** Formula term + the buffers of that tag, per formula tag. */
  expected: Record<FormulaTag, number>;
  /** This rank's bytes per tag on its device, now and at peak (since the last resetPeakMemoryStats). */
  measured: Record<MemoryTag, MemoryCounter>;
  /** Where the optim term is held: on the device, in the CPU offload pool, or in nvme files. */
  optimLocation: MemoryLocation;
  /** Where the param term's partitions are held (stage 3 with offload_param; else the device). */
  paramLocation: MemoryLocation;
  /** The CPU offload pool's bytes per tag (null when nothing was ever allocated there). */
  offloadPool: Record<MemoryTag, MemoryCounter> | null;
}

/** Builds the report for `engine` on this rank (no communication). */
export function memoryReport(engine: Engine, backend: EngineBackend): MemoryReport {
  const params = engine.module.parameters();
  // Ψ counts what trains: frozen parameters hold no gradient and no optimizer state.
  const trained = backend.stage === 0 ? [...new Set(backend.optimizer.paramGroups.flatMap((g) => g.params))] : params;
  const psi = (backend.stage !== 0 ? backend.zero.trainedNumel : undefined) ?? trained.reduce((n, p) => n + p.numel, 0);
  const dtype = params[0]?.dtype ?? 'f32';
  const b = itemSize(dtype);
  const master = dtype !== 'f32';
  const optimizer = optimizerInfo(backend, master);
  const K = 4 * optimizer.states + (master ? 4 : 0);
  const N = engine.group.size;
  const stage = backend.stage;
  const term = (tag: FormulaTag, per: number, from: number): FormulaTerm => {
    const partitioned = stage >= from;
    return { tag, bytesPerParam: per, partitioned, bytes: partitioned ? (per * psi) / N : per * psi };
  };
  const terms = [term('param', b, 3), term('grad', b, 2), term('optim', K, 1)];
  const buffers = backend.stage === 0 ? [] : zeroBuffers(backend.zero);
  const expected = { param: 0, grad: 0, optim: 0 };
  for (const t of terms) expected[t.tag] += t.bytes;
  for (const buf of buffers) if (buf.tag in expected) expected[buf.tag as FormulaTag] += buf.bytes;
  const device = params[0]?.device ?? 'cpu';
  const stats = memoryStats();
  const measured = stats[device] ?? stats.cpu;
  const z = engine.config.zero_optimization;
  return {
    rank: engine.group.rank, dpSize: N, stage, psi, dtype, optimizer,
    formula: { text: formulaText(terms), terms, bytes: terms.reduce((n, t) => n + t.bytes, 0) }, buffers, expected, measured,
    optimLocation: stage === 0 ? 'device' : locationOf(z.offload_optimizer.device),
    paramLocation: stage === 3 ? locationOf(z.offload_param.device) : 'device', offloadPool: stats[CPU_OFFLOAD_POOL] ?? null,
  };
}

/** "2Ψ + 14Ψ/N": the whole and the partitioned bytes per parameter. */
function formulaText(terms: FormulaTerm[]): string {
  const whole = terms.filter((t) => !t.partitioned).reduce((n, t) => n + t.bytesPerParam, 0);
  const part = terms.filter((t) => t.partitioned).reduce((n, t) => n + t.bytesPerParam, 0);
  return [whole ? `${whole}Ψ` : '', part ? `${part}Ψ/N` : ''].filter(Boolean).join(' + ') || '0';
}

function optimizerInfo(backend: EngineBackend, master: boolean): MemoryReport['optimizer'] {
  if (backend.stage !== 0) {
    const h = backend.zero.hyper;
    return { type: h.type, states: h.type === 'SGD' ? (h.momentum !== 0 ? 1 : 0) : 2, master };
  }
  const opt = backend.optimizer;
  if (opt instanceof SGD) return { type: 'SGD', states: opt.paramGroups.some((g) => g.momentum !== 0) ? 1 : 0, master };
  const type = opt instanceof Optimizer ? opt.constructor.name : 'unknown';
  return { type, states: 2, master };
}

/** Buffers of the ZeRO back end beyond the formula: its own list (ZeroStage3), else ZeroStage12's accessors. */
function zeroBuffers(zero: EngineZero): MemoryBuffer[] {
  if (zero.memoryBuffers) return zero.memoryBuffers();
  if (!(zero instanceof ZeroStage12)) return [];
  const out: MemoryBuffer[] = [];
  for (const { dtype, partition } of zero.partitions()) {
    const size = itemSize(dtype as 'f32');
    if (zero.stage === 1) {
      out.push({ name: 'stage-1 reduced gradient partition', tag: 'grad', bytes: partition.size * size, note: `${partition.size} ${dtype} elements (the full flat gradient is the formula's bΨ)` });
    }
  }
  if (zero.stage === 2 && zero.bucketBuffers > 0) {
    const size = itemSize(zero.partitions()[0].dtype as 'f32');
    const n = zero.bucketBuffers * zero.bucketBufferNumel;
    out.push({ name: 'stage-2 gradient buckets', tag: 'grad', bytes: n * size, note: `${zero.bucketBuffers} x ${zero.bucketBufferNumel} elements (reduce_bucket_size, pooled)` });
  }
  return out;
}

/** Bytes in KiB, MiB or GiB, whichever keeps the number readable. */
function mib(n: number): string {
  const [unit, div] = n >= 2 ** 30 ? ['GiB', 2 ** 30] : n >= 2 ** 20 ? ['MiB', 2 ** 20] : ['KiB', 2 ** 10];
  return `${(n / div).toFixed(div === 2 ** 10 ? 1 : 2)} ${unit}`;
}

/**
 * The report as a small table: one row per tag with current, peak, the formula's term, the
 * buffers and their sum, then the named buffers.
 * @example
 * if (engine.group.rank === 0) console.log(formatMemoryReport(engine.memoryReport()));
 */
export function formatMemoryReport(r: MemoryReport): string {
  const opt = `${r.optimizer.type}${r.optimizer.master ? ' + fp32 master' : ''}`;
  const head = `memory, rank ${r.rank} (ZeRO stage ${r.stage}, ${r.dtype} weights, ${opt}; Ψ = ${r.psi} parameters, N = ${r.dpSize} dp ranks)`;
  const per = r.formula.terms.map((t) => `${t.tag} ${t.bytesPerParam}Ψ${t.partitioned ? '/N' : ''}`).join(', ');
  const lines = [head, `  formula ${r.formula.text} = ${mib(r.formula.bytes)} (${per})`];
  const col = (s: string) => s.padStart(12, ' ');
  lines.push(`  ${'tag'.padEnd(10, ' ')}${col('current')}${col('peak')}${col('formula')}${col('+ buffers')}${col('expected')}`);
  for (const tag of MEMORY_TAGS) {
    const m = r.measured[tag];
    const t = r.formula.terms.find((x) => x.tag === tag);
    const extra = t ? r.expected[t.tag] - t.bytes : 0;
    const rest = t ? `${col(mib(t.bytes))}${col(mib(extra))}${col(mib(r.expected[t.tag]))}` : '';
    lines.push(`  ${tag.padEnd(10, ' ')}${col(mib(m.current))}${col(mib(m.peak))}${rest}`);
  }
  for (const tag of MEMORY_TAGS) {
    const m = r.offloadPool?.[tag];
    if (m && (m.current > 0 || m.peak > 0)) lines.push(`  ${tag.padEnd(10, ' ')}${col(mib(m.current))}${col(mib(m.peak))}  in the ${CPU_OFFLOAD_POOL} pool`);
  }
  const where = (l: MemoryLocation) => (l === 'nvme' ? 'nvme files (resident: the buffers in use)' : `the ${CPU_OFFLOAD_POOL} pool`);
  if (r.paramLocation !== 'device') lines.push(`  the param term's partitions are held in ${where(r.paramLocation)}`);
  if (r.optimLocation !== 'device') lines.push(`  the optim term is held in ${where(r.optimLocation)}`);
  for (const b of r.buffers) lines.push(`  buffer ${b.name} (${b.tag}): ${mib(b.bytes)}, ${b.note}`);
  return lines.join('\n');
}
