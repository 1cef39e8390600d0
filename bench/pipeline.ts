/**
 * Pipeline schedules on 4 real rank processes (GPT, f32, one thread each, shm backend): for GPipe,
 * 1F1B, interleaved 1F1B (2 stages per rank) and ZB-H1, the measured bubble fraction (idle share
 * of F/B/W time over ranks × makespan, from the gathered per-rank timelines) against the
 * textbook value ((p−1)/(m+p−1); /v interleaved; a third of 1F1B's for ZB-H1) and against the
 * simulator fed this run's own median action costs; tokens/s; peak 'activation' bytes per rank.
 *   npm run bench:pipeline      (or: npx tsx bench/pipeline.ts --quick | --m 8 | --svg DIR)
 * On a 2-core machine 4 ranks share 2 cores: while all of them compute, each runs at about half
 * speed, so measured bubbles come out lower than on 4 free devices. Read them side by side.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gptPipelineLayers } from '../models/gpt_pipeline.ts';
import type { GPTConfig } from '../models/index.ts';
import {
  AdamW, crossEntropy, DeviceMesh, destroyDistributed, gatherTimelines, initDistributed, type MicroBatch, manualSeed, measuredSimulation,
  memoryStats, PipelineEngine, PipelineModule, renderScheduleSvg, resetPeakMemoryStats, type ScheduleName, simulateSchedule, type Tensor,
  tensor, theoreticalBubble,
} from '../src/index.ts';
import { runBenchJob } from './launch.ts';
import { median } from './timing.ts';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const quick = process.argv.includes('--quick');
const P = 4;
const M = Number(arg('--m') ?? 8);
const STEPS = Number(arg('--steps') ?? (quick ? 2 : 4));
const ROWS = 4;
const CFG: GPTConfig = { vocabSize: 2048, nCtx: 64, nLayer: 8, nHead: 8, nEmbd: quick ? 128 : 256 };
const T = CFG.nCtx;
const SCHEDULES: ScheduleName[] = ['gpipe', '1f1b', 'interleaved', 'zb-h1'];

interface Result {
  schedule: string;
  v: number;
  stepMs: number;
  bubble: number;
  simulated: number;
  /** Simulated with CPU-time costs: what ranks with a core each would see. */
  dedicated: number;
  theory: number;
  costs: { F: number; B: number; W: number };
  cpu: { F: number; B: number; W: number };
  peakActivation: number[];
}

// ---- worker: one rank --------------------------------------------------------------------

function batch(step: number): MicroBatch[] {
  return Array.from({ length: M }, (_, j) => {
    const x = Int32Array.from({ length: ROWS * T }, (_, i) => (i * 7919 + (step * M + j) * 104729) % CFG.vocabSize);
    const y = Int32Array.from({ length: ROWS * T }, (_, i) => (i * 6007 + (step * M + j) * 1299709 + 1) % CFG.vocabSize);
    return [tensor(x, { dtype: 'i32', shape: [ROWS, T] }), tensor(y, { dtype: 'i32', shape: [ROWS, T] })] as MicroBatch;
  });
}

async function run(mesh: DeviceMesh, schedule: ScheduleName): Promise<Result> {
  const v = schedule === 'interleaved' ? 2 : 1;
  manualSeed(0);
  const pipe = new PipelineModule({
    layers: gptPipelineLayers(CFG).layers, numStages: P * v, partitionMethod: 'type:TransformerBlock', group: mesh.group('pp'),
    lossFn: (logits: Tensor, y: Tensor) => crossEntropy(logits.reshape([-1, CFG.vocabSize]), y.reshape([-1])),
  });
  const engine = await PipelineEngine.create({ module: pipe, microBatches: M, schedule, optimizer: new AdamW(pipe.parameters(), { lr: 1e-4 }) });
  const g = mesh.group('pp');
  const times: number[] = [];
  const bubbles: number[] = [];
  const costs = { F: [] as number[], B: [] as number[], W: [] as number[] };
  const cpus = { F: [] as number[], B: [] as number[], W: [] as number[] };
  let peak = 0;
  for (let s = -1; s < STEPS; s++) {
    const data = batch(s + 1);
    resetPeakMemoryStats();
    g.barrier();
    const t0 = performance.now();
    engine.trainBatch(data);
    g.barrier();
    const ms = performance.now() - t0;
    for (const [x, y] of data) {
      x.dispose();
      y.dispose();
    }
    peak = Math.max(peak, memoryStats().cpu?.activation?.peak ?? 0);
    const sim = measuredSimulation(gatherTimelines(g, engine.schedule, engine.timeline), engine.schedule.splitBackward);
    if (s < 0) continue;  // warm-up batch
    times.push(ms);
    bubbles.push(sim.bubbleFraction);
    for (const row of sim.timelines) {
      for (const t of row) {
        if (!(t.action.kind in costs)) continue;
        costs[t.action.kind as 'F' | 'B' | 'W'].push(t.end - t.start);
        cpus[t.action.kind as 'F' | 'B' | 'W'].push(t.cpu ?? Number.NaN);
      }
    }
    if (s === STEPS - 1 && arg('--svg') && g.rank === 0) {
      const dir = arg('--svg') as string;
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, `${schedule}-measured.svg`), renderScheduleSvg(sim, { title: `${schedule}: measured (ms)`, unit: 2 }));
    }
  }
  const c = { F: median(costs.F), B: median(costs.B), W: costs.W.length ? median(costs.W) : 0 };
  const cpu = { F: median(cpus.F), B: median(cpus.B), W: cpus.W.length ? median(cpus.W) : 0 };
  // Unsplit B actions hold B + W: give the simulator the same split so the schedules compare.
  const simOf = (x: typeof c) => simulateSchedule(engine.schedule, engine.schedule.splitBackward ? { ...x, comm: 0 } : { F: x.F, B: x.B / 2, W: x.B / 2, comm: 0 });
  const planned = simOf(c);
  const dedicated = simOf(cpu).bubbleFraction;
  if (arg('--svg') && g.rank === 0) fs.writeFileSync(path.join(arg('--svg') as string, `${schedule}-planned.svg`), renderScheduleSvg(planned, { title: `${schedule}: planned with measured costs (ms)`, unit: 2 }));
  const peaks = tensor(new Float64Array(P), { dtype: 'f64' });
  const mine = tensor([peak], { dtype: 'f64' });
  g.allGather(peaks, mine);
  const peakActivation = Array.from(peaks.toArray() as Float64Array);
  peaks.dispose();
  mine.dispose();
  pipe.dispose();
  return {
    schedule, v, stepMs: median(times), bubble: median(bubbles), simulated: planned.bubbleFraction, dedicated, theory: theoreticalBubble(schedule, P, M, v),
    costs: c, cpu, peakActivation,
  };
}

async function worker(): Promise<void> {
  const world = await initDistributed({ timeoutMs: 120_000 });
  const mesh = await DeviceMesh.init({ pp: world.size });
  const results: Result[] = [];
  for (const s of (arg('--schedules')?.split(',') as ScheduleName[]) ?? SCHEDULES) results.push(await run(mesh, s));
  if (world.rank === 0) console.log(`RESULT ${JSON.stringify(results)}`);
  mesh.destroy();
  await destroyDistributed();
}

// ---- parent ------------------------------------------------------------------------------------

const runJob = (np: number): Promise<Result[]> => runBenchJob(np, import.meta.url);

async function parent(): Promise<void> {
  console.log(`meshtrain pipeline benchmark: GPT ${CFG.nLayer} blocks, hidden ${CFG.nEmbd}, vocab ${CFG.vocabSize}, ${P} pipeline ranks, ${M} micro-batches of ${ROWS} x ${T} tokens, f32, AdamW;`);
  console.log(`one process per rank with one thread each on ${os.availableParallelism()} cores (shm backend); medians over ${STEPS} batches after one warm-up\n`);
  const all = await runJob(P);
  const cell = (v: string | number, w = 11) => String(v).padStart(w);
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  console.log(`${'schedule'.padEnd(14)}${cell('theory')}${cell('sim (cpu)')}${cell('sim (wall)')}${cell('measured')}${cell('batch ms')}${cell('tokens/s')}${cell('F/B/W cpu ms', 18)}  peak activation MiB per rank`);
  for (const r of all) {
    const tokens = (M * ROWS * T) / (r.stepMs / 1000);
    const fbw = `${r.cpu.F.toFixed(1)}/${r.cpu.B.toFixed(1)}/${r.cpu.W.toFixed(1)}`;
    console.log(`${`${r.schedule}${r.v > 1 ? ` v=${r.v}` : ''}`.padEnd(14)}${cell(pct(r.theory))}${cell(pct(r.dedicated))}${cell(pct(r.simulated))}${cell(pct(r.bubble))}${cell(r.stepMs.toFixed(0))}${cell(tokens.toFixed(0))}${cell(fbw, 18)}  ${r.peakActivation.map((b) => (b / 2 ** 20).toFixed(1)).join(' / ')}`);
  }
  console.log('\ntheory: textbook bubble with F = B = W, free communication. sim (cpu) / sim (wall): the simulator running this schedule with the');
  console.log('median CPU time / wall time of each F, B, W of the run (unsplit B halved into B + W); CPU time leaves out waits for a core, so');
  console.log('sim (cpu) is what ranks with a core each would see. measured: idle share of F/B/W wall time over ranks x makespan of the real run');
  console.log('(with more ranks than cores, a rank waiting for a core counts as busy, and one waiting for data lends its core to the others).');
}

if (process.env.RANK === undefined) await parent();
else await worker();
