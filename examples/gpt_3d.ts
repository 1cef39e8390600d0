/**
 * The main demo: GPT trained on a 3D mesh — tensor parallelism inside each pipeline stage (tp),
 * a 1F1B pipeline across stages (pp), ZeRO over data-parallel replicas (dp) — set up the DeepSpeed
 * way, `initialize({ model: pipelineModule, config, mesh })`. Rank 0 prints the resolved config, the
 * mesh and the partition, then per step the loss, tokens/s and the measured pipeline bubble; at
 * the end each rank's peak memory by tag and the measured timeline of the last step as an SVG.
 *   npx meshtrain --num_procs 8 examples/gpt_3d.ts --mesh dp=2,pp=2,tp=2 --zero 1
 *   npx meshtrain --num_procs 8 examples/gpt_3d.ts --mesh pp=4,tp=2 --zero 0 --sp --layers 6
 *   npx meshtrain --num_procs 8 examples/gpt_3d.ts --mesh dp=8 --zero 3
 * Options: --size (gptConfig name), --layers, --embd and --heads (override the size's), --microBatches, --micro (rows per micro-batch),
 * --seq, --steps, --lr, --sp (sequence parallelism), --schedule, --text FILE (bytes as tokens),
 * --svg DIR (default: the OS temp dir), --seed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gptTensorParallelPipelineLayers } from '../models/gpt_pipeline_tp.ts';
import { gptConfig } from '../models/index.ts';
import {
  DeviceMesh, destroyDistributed, gatherTimelines, initDistributed, initialize, type MeshCoords, manualSeed, measuredSimulation, memoryStats,
  PipelineModule, renderScheduleSvg, tensor,
} from '../src/index.ts';
import { MEMORY_TAGS } from '../src/tensor/storage.ts';
import { resetTensorParallelCommStats, tensorParallelCommStats } from '../src/tensor_parallel/index.ts';
import { parseArgs } from './args.ts';
import { microBatchStream, timedTrainBatch } from './micro_batches.ts';

const args = parseArgs({
  mesh: 'dp=2,pp=2,tp=2', zero: 1, size: 'tiny', layers: 4, embd: 0, heads: 0, microBatches: 4, micro: 4, seq: 16, steps: 20, lr: 3e-3, sp: false,
  schedule: '1f1b', text: '', svg: '', seed: 0,
});

/** "dp=2,pp=2,tp=2" → sizes (missing axes 1). */
function parseMesh(s: string): Partial<MeshCoords> {
  const out: Partial<MeshCoords> = {};
  for (const part of s.split(',').filter(Boolean)) {
    const [axis, n] = part.split('=');
    if (!['dp', 'pp', 'tp'].includes(axis) || !/^\d+$/.test(n ?? '')) throw new Error(`--mesh: expected axis=size items (dp, pp, tp), got ${JSON.stringify(part)} in ${JSON.stringify(s)}`);
    out[axis as keyof MeshCoords] = Number(n);
  }
  return out;
}

const world = await initDistributed();
const mesh = await DeviceMesh.init(parseMesh(args.mesh));
const { dp: dpRank } = mesh.coords();
const { dp, pp, tp } = mesh.sizes;
const log = (s: string) => world.rank === 0 && console.log(s);
if (![0, 1, 2, 3].includes(args.zero)) throw new Error(`--zero must be 0, 1, 2 or 3, got ${args.zero}`);

const vocab = args.text ? 256 : 64;
const config = gptConfig(args.size, {
  vocabSize: vocab, nCtx: Math.max(args.seq, 16), nLayer: args.layers, ...(args.embd ? { nEmbd: args.embd } : {}), ...(args.heads ? { nHead: args.heads } : {}),
});
manualSeed(args.seed);
const { layers, lossFn } = gptTensorParallelPipelineLayers(config, mesh.group('tp'), { sequenceParallel: args.sp });
const pipe = new PipelineModule({ layers, numStages: pp, partitionMethod: 'type:TransformerBlock', lossFn, group: mesh.group('pp') });
log(`${mesh}\nZeRO stage ${args.zero} over dp${args.sp ? ', sequence parallelism' : ''}\n${pipe.describe()}`);
// The DeepSpeed way: a config (here built from the flags; a JSON file works too) and initialize(), which reads the
// dp, pp and tp groups from the mesh. pipeline.schedule is a meshtrain extension (DeepSpeed runs only 1F1B).
const dsConfig = {
  train_micro_batch_size_per_gpu: args.micro,
  gradient_accumulation_steps: args.microBatches,
  gradient_clipping: 1.0,
  optimizer: { type: 'AdamW', params: { lr: args.lr, weight_decay: 0.01 } },
  zero_optimization: { stage: args.zero },
  pipeline: { schedule: args.schedule },
};
const { engine } = await initialize({ model: pipe, config: dsConfig, mesh, hiddenSize: config.nEmbd, log });

const stream = microBatchStream({ text: args.text, seq: args.seq, vocab, seed: args.seed, micro: args.micro, replicas: dp, rank: dpRank });
const tokens = args.micro * args.seq * args.microBatches * dp;
let sim = measuredSimulation([[]]);
let tpBytes = 0;
for (let step = 1; step <= args.steps; step++) {
  if (step === 2) resetTensorParallelCommStats(); // per-step traffic counted from step 2 on (step 1 sets up)
  const { loss, ms } = timedTrainBatch(engine, stream, args.microBatches);
  sim = measuredSimulation(gatherTimelines(mesh.group('pp'), engine.schedule, engine.timeline), engine.schedule.splitBackward);
  log(`step ${step}: loss ${loss.toFixed(4)}  ${ms.toFixed(0)} ms  ${((tokens / ms) * 1000).toFixed(0)} tokens/s  measured bubble ${(100 * sim.bubbleFraction).toFixed(1)}%`);
}

tpBytes = args.steps > 1 ? tensorParallelCommStats().bytes / (args.steps - 1) : 0;

/**
 * The tp collectives' bytes per step on this rank by the analytic count: per micro-batch, each
 * block 2 all-reduces of b·s·h forward and 2 backward (sequence parallel: 4 + 4 gathers and
 * reduce-scatters of the same size); the first stage's embedding all-reduce (+ the region's entry
 * under sp), the last stage's head input (an all-reduce in backward; sp: ln_f's gather and
 * reduce-scatter).
 */
function analyticTpBytes(): number {
  if (tp === 1) return 0;
  const blocks = pipe.stages.reduce((n, st) => {
    const [lo, hi] = pipe.stageRange(st);
    return n + pipe.layerNames.slice(lo, hi).filter((name) => name === 'TransformerBlock').length;
  }, 0);
  const first = pipe.stages.includes(0) ? (args.sp ? 2 : 1) : 0;
  const last = pipe.stages.includes(pipe.numStages - 1) ? (args.sp ? 2 : 1) : 0;
  const perMicro = blocks * (args.sp ? 8 : 4) + first + last;
  return perMicro * args.microBatches * args.micro * args.seq * config.nEmbd * 4;
}

// Peak bytes per memory tag and tp traffic per step on every rank, gathered to rank 0.
const cpu = memoryStats().cpu;
const cols = MEMORY_TAGS.length + 2;
const mine = tensor([...MEMORY_TAGS.map((t) => cpu?.[t]?.peak ?? 0), tpBytes, analyticTpBytes()], { dtype: 'f64', tag: 'comm' });
const all = tensor(new Float64Array(world.size * cols), { dtype: 'f64', tag: 'comm' });
world.allGather(all, mine);
const rows = all.toArray() as Float64Array;
const kib = (b: number) => `${(b / 1024).toFixed(1)}`.padStart(11);
log(`peak memory per rank (KiB) and tp traffic per step (KiB, measured / analytic):\n  rank (pp,dp,tp) ${MEMORY_TAGS.map((t) => t.padStart(11)).join('')}      tp comm`);
for (let r = 0; r < world.size; r++) {
  const c = mesh.coords(r);
  const row = rows.subarray(r * cols, (r + 1) * cols);
  log(`  ${String(r).padStart(4)} (${c.pp},${c.dp},${c.tp})    ${MEMORY_TAGS.map((_, i) => kib(row[i])).join('')}  ${(row[cols - 2] / 1024).toFixed(1)} / ${(row[cols - 1] / 1024).toFixed(1)}`);
}
mine.dispose();
all.dispose();

if (world.rank === 0) {
  const dir = args.svg || fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-gpt3d-'));
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'timeline.svg');
  fs.writeFileSync(file, renderScheduleSvg(sim, { title: `${engine.schedule.name} on pp ${pp} (dp ${dp}, tp ${tp}): measured (ms)`, unit: 4 }));
  log(`measured pipeline timeline of the last step: ${file}  (bubble ${(100 * sim.bubbleFraction).toFixed(1)}%)`);
}
engine.zero?.destroy();
mesh.destroy();
await destroyDistributed();
