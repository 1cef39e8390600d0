/**
 * ZeRO benchmark: ResNet-101 training steps on CIFAR-10-shaped 32x32 batches (the DeepSpeed
 * example's torchvision model: ImageNet stem, 10 classes, AdamW) through initialize() at ZeRO
 * stages 0-3 on 4 real rank processes (shm backend, OMP_NUM_THREADS=1 each). Per stage: the step
 * time (median over the timed steps, slowest rank), images/s, and each rank's peak bytes by memory
 * tag over the timed steps (the maximum over ranks; the CPU offload pool in its own column) beside
 * ZeRO's formula for the stage, and how many timed steps fp16 skipped on overflow. Last,
 * ZeRO-3's throughput relative to stage 0 (stage-0 step time / stage-3 step time; goal >= 0.8:
 * the parameter gathers overlap compute). A stage initialize() refuses is reported, not fatal.
 *   npm run bench:zero
 *   npx tsx bench/zero.ts --quick                      (resnet18, 2 ranks x batch 2, 2 steps)
 *   npx tsx bench/zero.ts --stages 0,3 --arch resnet50 --ranks 4 --batch 8 --steps 3 --dtype bf16 --offload cpu
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ResNet } from '../models/index.ts';
import {
  crossEntropy, destroyDistributed, initDistributed, initialize, manualSeed, memoryStats, randn, resetPeakMemoryStats, tensor, tidy,
} from '../src/index.ts';
import { median } from './timing.ts';

interface Options {
  stages: number[];
  ranks: number;
  arch: string;
  batch: number;
  steps: number;
  warmup: number;
  dtype: 'f32' | 'bf16' | 'f16';
  offload: 'none' | 'cpu' | 'nvme';
}

/** What one rank measured. */
interface RankResult {
  rank: number;
  stepSeconds: number[];
  losses: number[];
  peak: Record<string, number>;
  /** Peak bytes per tag outside 'cpu' (the CPU offload pool), summed over tags. */
  offloadPeak: number;
  /** fp16 steps skipped on overflow during the timed steps (no optimizer step in them). */
  skipped: number;
  formula: { text: string; bytes: number; expected: Record<string, number> };
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function options(): Options {
  const quick = process.argv.includes('--quick');
  const dtype = arg('--dtype') ?? 'f32';
  if (!['f32', 'bf16', 'f16'].includes(dtype)) throw new Error(`--dtype: expected f32, bf16 or f16, got ${dtype}`);
  const offload = arg('--offload') ?? 'none';
  if (!['none', 'cpu', 'nvme'].includes(offload)) throw new Error(`--offload: expected none, cpu or nvme, got ${offload}`);
  const int = (name: string, def: number) => {
    const v = Number(arg(name) ?? def);
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name}: expected a positive integer, got ${arg(name)}`);
    return v;
  };
  const stages = (arg('--stages') ?? '0,1,2,3').split(',').map(Number);
  if (stages.some((s) => ![0, 1, 2, 3].includes(s))) throw new Error(`--stages: expected a list of 0-3, got ${arg('--stages')}`);
  return {
    stages,
    ranks: int('--ranks', quick ? 2 : 4),
    arch: arg('--arch') ?? (quick ? 'resnet18' : 'resnet101'),
    batch: int('--batch', quick ? 2 : 4),
    steps: int('--steps', quick ? 2 : 3),
    warmup: int('--warmup', 1),
    dtype: dtype as Options['dtype'],
    offload: offload as Options['offload'],
  };
}

/** The DeepSpeed config of one run: the example's optimizer and bucket sizes (its "auto" values for a 2048-wide head). */
function dsConfig(o: Options, stage: number): Record<string, unknown> {
  const offload = o.offload !== 'none' && stage > 0 ? { offload_optimizer: { device: o.offload, ...(o.offload === 'nvme' ? { nvme_path: '/tmp' } : {}) } } : {};
  return {
    train_micro_batch_size_per_gpu: o.batch,
    optimizer: { type: 'AdamW', params: { lr: 1e-4, weight_decay: 0.01 } },
    ...(o.dtype === 'f16' ? { fp16: { enabled: true, initial_scale_power: 8 } } : o.dtype === 'bf16' ? { bf16: { enabled: true } } : {}),
    zero_optimization: {
      stage, overlap_comm: true, contiguous_gradients: true, reduce_bucket_size: 2048 * 2048,
      ...(stage === 3 ? { stage3_prefetch_bucket_size: Math.floor(0.9 * 2048 * 2048), stage3_param_persistence_threshold: 20480 } : {}),
      ...offload,
    },
  };
}

// ---- a rank: one stage, warm-up then timed steps, peaks over the timed steps -----------------

async function rank(o: Options, stage: number): Promise<void> {
  const world = await initDistributed();
  const depth = Number(/^resnet(\d+)$/.exec(o.arch)?.[1]);
  manualSeed(0);
  const model = new ResNet(depth, { numClasses: 10, dtype: o.dtype });
  const { engine } = await initialize({ model, config: dsConfig(o, stage), log: () => {} });
  // Each rank its own fixed batch: the data pipeline is not what this measures.
  manualSeed(1 + world.rank);
  const x = randn([o.batch, 3, 32, 32]).to(o.dtype);
  const y = tensor(Array.from({ length: o.batch }, (_, i) => (i * 7 + world.rank) % 10), { dtype: 'i64' });
  const stepSeconds: number[] = [];
  const losses: number[] = [];
  let skippedBefore = 0;
  for (let i = 0; i < o.warmup + o.steps; i++) {
    if (i === o.warmup) {
      resetPeakMemoryStats(); // optimizer state exists by now (unless every warm-up step overflowed); peaks are the steady state's
      skippedBefore = engine.skippedSteps;
    }
    const t0 = performance.now();
    const loss = tidy(() => {
      const l = crossEntropy(engine.forward(x), y);
      engine.backward(l);
      return l.item();
    });
    engine.step();
    if (i >= o.warmup) {
      stepSeconds.push((performance.now() - t0) / 1000);
      losses.push(loss);
    }
  }
  const stats = memoryStats();
  const peak = Object.fromEntries(Object.entries(stats.cpu ?? {}).map(([t, c]) => [t, c.peak]));
  const offloadPeak = Object.entries(stats)
    .filter(([device]) => device !== 'cpu')
    .reduce((s, [, tags]) => s + Object.values(tags).reduce((a, c) => a + c.peak, 0), 0);
  const r = engine.memoryReport();
  const result: RankResult = {
    rank: world.rank, stepSeconds, losses, peak, offloadPeak, skipped: engine.skippedSteps - skippedBefore,
    formula: { text: r.formula.text, bytes: r.formula.bytes, expected: r.expected },
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
  engine.destroy();
  await destroyDistributed();
}

// ---- the parent: one launcher per stage, the table ------------------------------------------

interface StageResult {
  stage: number;
  ranks?: RankResult[];
  error?: string;
}

function runStage(o: Options, stage: number): Promise<StageResult> {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const args = ['--import', 'tsx', path.join(root, 'src/cli/launcher.ts'), '--num_procs', String(o.ranks), '--master_port', '0', '--no_local_rank',
    fileURLToPath(import.meta.url), ...process.argv.slice(2), '--rank-stage', String(stage)];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (out += d));
    child.on('close', (code) => {
      const ranks = [...out.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]) as RankResult);
      if (code === 0 && ranks.length === o.ranks) return resolve({ stage, ranks });
      const why = /^\[rank \d+\] (?:Error: )?(.*(?:not implemented|refus|needs).*)$/m.exec(out)?.[1] ?? out.trim().split('\n').slice(-6).join('\n');
      resolve({ stage, error: `exit ${code}: ${why}` });
    });
  });
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);

function table(o: Options, results: StageResult[]): void {
  const tags = ['param', 'grad', 'optim', 'activation', 'comm', 'other'];
  const head = ['stage', 'step s', 'img/s', 'skipped', ...tags.map((t) => `${t} MiB`), 'total MiB', 'offload MiB', 'formula', 'formula MiB'];
  const rows: string[][] = [];
  for (const r of results) {
    if (!r.ranks) {
      rows.push([String(r.stage), `not run: ${r.error}`]);
      continue;
    }
    // A data-parallel step ends when the slowest rank's does.
    const step = Math.max(...r.ranks.map((x) => median(x.stepSeconds)));
    const peak = (t: string) => Math.max(...r.ranks!.map((x) => x.peak[t] ?? 0));
    const total = Math.max(...r.ranks.map((x) => tags.reduce((s, t) => s + (x.peak[t] ?? 0), 0)));
    const f = r.ranks[0].formula;
    const offload = Math.max(...r.ranks.map((x) => x.offloadPeak));
    const skipped = Math.max(...r.ranks.map((x) => x.skipped));
    rows.push([
      String(r.stage), step.toFixed(3), ((o.batch * o.ranks) / step).toFixed(1), `${skipped}/${o.steps}`, ...tags.map((t) => mib(peak(t))), mib(total),
      mib(offload), f.text, mib(f.bytes),
    ]);
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r.length > 2 ? (r[i] ?? '').length : 0))));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || cells.length <= 2 ? c : c.padStart(widths[i]))).join('  ');
  console.log(line(head.map((h, i) => h.padStart(widths[i]))));
  for (const r of rows) console.log(r.length > 2 ? line(r.map((c, i) => (i === 0 ? c.padStart(widths[0]) : c))) : `${r[0].padStart(widths[0])}  ${r[1]}`);
  const time = (s: number) => {
    const r = results.find((x) => x.stage === s && x.ranks);
    return r?.ranks ? Math.max(...r.ranks.map((x) => median(x.stepSeconds))) : null;
  };
  const t0 = time(0);
  const t3 = time(3);
  if (t0 !== null && t3 !== null) console.log(`\nZeRO-3 throughput / stage 0 = ${(t0 / t3).toFixed(2)} (stage-0 step ${t0.toFixed(3)} s / stage-3 step ${t3.toFixed(3)} s; goal >= 0.8)`);
  else console.log('\nZeRO-3 throughput / stage 0: needs stages 0 and 3 both measured');
}

async function parent(o: Options): Promise<void> {
  console.log(
    `meshtrain ZeRO benchmark: ${o.arch} (ImageNet stem, 10 classes), 32x32 images, ${o.ranks} ranks x batch ${o.batch}, ${o.dtype}, AdamW, ` +
      `offload ${o.offload}; ${o.warmup} warm-up + ${o.steps} timed steps per stage; shm backend, OMP_NUM_THREADS=1 per rank; ` +
      `memory: peak over the timed steps, the largest rank; ${os.availableParallelism()} cores, load average ${os.loadavg()[0].toFixed(1)} at start\n`,
  );
  const results: StageResult[] = [];
  for (const stage of o.stages) {
    process.stderr.write(`stage ${stage}...\n`);
    results.push(await runStage(o, stage));
  }
  table(o, results);
}

const opts = options();
const rankStage = arg('--rank-stage');
if (rankStage !== undefined) await rank(opts, Number(rankStage));
else await parent(opts);
