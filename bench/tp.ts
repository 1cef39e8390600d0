/**
 * Tensor-parallel GPT training step at tp = 1, 2 and 4 (gptTensorParallelPlan, with and without
 * sequence parallelism) against the unsharded model, each rank one process with one thread (shm
 * backend): median step time (forward, vocab-parallel loss, backward, AdamW), the share of it
 * spent in the tp collectives, and the bytes those moved per step beside the analytic count
 * (b·s·h activations: per layer two all-reduces forward and two backward, plus the embedding's
 * all-reduce and the tied head's; with sequence parallelism each all-reduce becomes an all-gather
 * and a reduce-scatter pair of the same full size, plus the entry and exit of the region).
 *   npm run bench:tp        (or: npx tsx bench/tp.ts --quick | --tp 1,2 | --steps 8)
 */
import os from 'node:os';
import { GPT, type GPTConfig } from '../models/index.ts';
import {
  AdamW, crossEntropy, DeviceMesh, destroyDistributed, initDistributed, type Module, manualSeed, type ProcessGroup, type Tensor, tensor, tidy,
  zeros,
} from '../src/index.ts';
import {
  allReduceSequenceParallelGrads, gptTensorParallelPlan, parallelize, resetTensorParallelCommStats, tensorParallelCommStats,
  vocabParallelCrossEntropy,
} from '../src/tensor_parallel/index.ts';
import { runBenchJob } from './launch.ts';
import { median } from './timing.ts';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const quick = process.argv.includes('--quick');
const STEPS = Number(arg('--steps') ?? (quick ? 3 : 6));
const B = quick ? 4 : 8;
const CFG: GPTConfig = { vocabSize: 8192, nCtx: 128, nLayer: quick ? 2 : 4, nHead: 8, nEmbd: 256 };
const T = CFG.nCtx;

interface Result { label: string; tp: number; sp: boolean; stepMs: number; commMs: number; isolatedMs: number; bytes: number; calls: Record<string, number> }

// ---- worker: one rank --------------------------------------------------------------------

function batch(step: number): { ids: Tensor; tg: Tensor } {
  const x = Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + step * 104729) % CFG.vocabSize);
  const y = Int32Array.from({ length: B * T }, (_, i) => (i * 6007 + step * 1299709 + 1) % CFG.vocabSize);
  return { ids: tensor(x, { dtype: 'i32', shape: [B, T] }), tg: tensor(y, { dtype: 'i32', shape: [B * T] }) };
}

/** Median step time and per-step tp communication of `step` over STEPS steps after one warm-up. */
function measure(label: string, tp: number, sp: boolean, step: (i: number) => void): Result {
  step(STEPS);  // warm-up (batches not timed): allocator cache, kernel primitives
  step(STEPS + 1);
  const times: number[] = [];
  resetTensorParallelCommStats();
  for (let i = 0; i < STEPS; i++) {
    const t0 = performance.now();
    step(i);
    times.push(performance.now() - t0);
  }
  const s = tensorParallelCommStats();
  const calls = Object.fromEntries(Object.entries(s.calls).map(([k, v]) => [k, v / STEPS]));
  return { label, tp, sp, stepMs: median(times), commMs: s.ms / STEPS, isolatedMs: 0, bytes: s.bytes / STEPS, calls };
}

/**
 * The step's collectives on their own: `calls` of each kind on a b·s·h f32 activation, ranks
 * lined up by a barrier first, so no waiting for a slower rank's compute is counted (median of 5).
 */
function isolatedComm(g: ProcessGroup, calls: Record<string, number>): number {
  const full = zeros([B, T, CFG.nEmbd]);
  const part = zeros([B, T / g.size, CFG.nEmbd]);
  const times: number[] = [];
  for (let r = 0; r < 5; r++) {
    g.barrier();
    const t0 = performance.now();
    for (let i = 0; i < (calls.allReduce ?? 0); i++) g.allReduce(full, 'sum');
    for (let i = 0; i < (calls.allGather ?? 0); i++) g.allGather(full, part);
    for (let i = 0; i < (calls.reduceScatter ?? 0); i++) g.reduceScatter(part, full, 'sum');
    times.push(performance.now() - t0);
  }
  full.dispose();
  part.dispose();
  return median(times);
}

async function worker(): Promise<void> {
  const world = await initDistributed();
  const mesh = await DeviceMesh.init({ tp: world.size });
  const g = mesh.group('tp');
  const results: Result[] = [];
  if (world.size === 1) {
    manualSeed(0);
    const model = new GPT(CFG);
    const opt = new AdamW(model.parameters(), { lr: 1e-4 });
    results.push(measure('unsharded', 1, false, (i) => tidy(() => {
      const { ids, tg } = batch(i);
      crossEntropy(model.forward(ids).reshape([B * T, CFG.vocabSize]), tg).backward();
      opt.step();
      opt.zeroGrad();
    })));
    model.dispose();
  }
  for (const sp of [false, true]) {
    manualSeed(0);
    const model: Module = parallelize(new GPT(CFG), gptTensorParallelPlan({ sequenceParallel: sp }), mesh);
    const opt = new AdamW(model.parameters(), { lr: 1e-4 });
    results.push(measure(`tp=${world.size}${sp ? ' +SP' : ''}`, world.size, sp, (i) => tidy(() => {
      const { ids, tg } = batch(i);
      const logits = model.forward(ids) as Tensor;
      vocabParallelCrossEntropy(logits.reshape([B * T, logits.shape[2]]), tg, g).backward();
      allReduceSequenceParallelGrads(model, g);
      opt.step();
      opt.zeroGrad();
    })));
    const last = results[results.length - 1];
    if (g.size > 1) last.isolatedMs = isolatedComm(g, last.calls);
    model.dispose();
  }
  if (world.rank === 0) console.log(`RESULT ${JSON.stringify(results)}`);
  mesh.destroy();
  await destroyDistributed();
}

// ---- parent: one job per tp size ------------------------------------------------------------

const runJob = (np: number): Promise<Result[]> => runBenchJob(np, import.meta.url);

/** Analytic bytes per step on the tp axis (full-size side of each collective, f32). */
function analytic(tp: number, sp: boolean): { collectives: number; bytes: number } {
  if (tp === 1) return { collectives: 0, bytes: 0 };
  const act = B * T * CFG.nEmbd * 4;
  // No SP: 2 all-reduces per layer forward (row-parallel outputs) + 2 backward (column-parallel inputs),
  // the embedding's forward all-reduce and the tied head's backward one. SP: each becomes a gather or
  // a reduce-scatter (4 + 4 per layer), the embedding keeps its all-reduce, the region's entry gathers
  // in backward, its exit (ln_f) gathers forward and reduce-scatters backward.
  const n = sp ? 8 * CFG.nLayer + 1 + 1 + 2 : 4 * CFG.nLayer + 2;
  return { collectives: n, bytes: n * act };
}

async function parent(): Promise<void> {
  const sizes = (arg('--tp') ?? '1,2,4').split(',').map(Number);
  const cores = os.availableParallelism();
  console.log(`meshtrain tensor-parallel benchmark: GPT ${CFG.nLayer} layers, hidden ${CFG.nEmbd}, ${CFG.nHead} heads, vocab ${CFG.vocabSize}, batch ${B} x ${T} tokens, f32, AdamW;`);
  console.log(`one process per rank with one thread each on ${cores} cores (shm backend); medians over ${STEPS} steps\n`);
  const all: Result[] = [];
  for (const np of sizes) {
    process.stderr.write(`running tp = ${np}...\n`);
    all.push(...(await runJob(np)));
  }
  const base = all.find((r) => r.label === 'unsharded');
  const cell = (v: string | number, w = 12) => String(v).padStart(w);
  console.log(`${'layout'.padEnd(12)}${cell('step ms')}${cell('vs unsharded', 14)}${cell('tp comm ms')}${cell('comm share')}${cell('isolated ms')}${cell('collectives')}${cell('MiB/step')}${cell('analytic MiB', 14)}`);
  for (const r of all) {
    const a = analytic(r.tp, r.sp);
    const n = Object.values(r.calls).reduce((x, y) => x + y, 0);
    console.log(
      `${r.label.padEnd(12)}${cell(r.stepMs.toFixed(1))}${cell(base ? `${(base.stepMs / r.stepMs).toFixed(2)}x` : '-', 14)}${cell(r.commMs.toFixed(1))}` +
        `${cell(`${((100 * r.commMs) / r.stepMs).toFixed(1)}%`)}${cell(r.isolatedMs.toFixed(1))}${cell(`${n} / ${a.collectives}`)}${cell((r.bytes / 2 ** 20).toFixed(2))}${cell((a.bytes / 2 ** 20).toFixed(2), 14)}`,
    );
  }
  console.log('\n"vs unsharded" is the unsharded step time over this one (above 1: faster). "tp comm ms" is the time inside the tp');
  console.log('collectives during the steps (waiting for a slower rank included); "isolated ms" runs the same collectives alone,');
  console.log('ranks lined up first. Collectives are measured / analytic per step.');
}

if (process.env.RANK === undefined) await parent();
else await worker();
