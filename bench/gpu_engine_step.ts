/**
 * What the device-decided `engine.step()` (src/engine/decided_step.ts) buys on a GPU: GPT-2 124M
 * bf16 through initialize() at ZeRO 0 with the DeepSpeed GPT recipe (AdamW lr 6e-4, betas 0.9/0.95,
 * weight decay 0.1, gradient_clipping 1.0, WarmupDecayLR), at batch 8 x 1024 and 1 x 1024 (where the
 * host matters most). Three modes, each its own engine built from the same seed, interleaved round
 * by round (the order rotating):
 *   (a) host-decided eager: `engineTesting.hostDecides` (the overflow check and the clip factor read
 *       back, one host wait per step that stalls the host until the backward is done);
 *   (b) device-decided eager (the default): nothing read; the outcome is settled a step later;
 *   (c) the whole step (forward, loss, backward, engine.step()) captured after one eager step and
 *       replayed; the static inputs take each step's batch by copyInPlace (so do (a) and (b), alike).
 * Per mode: device ms/step (CUDA events around `--steps` untimed steps, bench/gpu_timing.ts), host
 * ms/step to issue them, host waits (cudaSyncCount) per step, and (a)'s device ms over the mode's
 * (paired per round; > 1: faster than (a)); medians over rounds and their min-max. The first 3
 * steps' losses (read, before timing; for (c): one eager step, then 2 replays) and the state after
 * them (a SHA-256 of every weight, the optimizer's f32 master weights, moments and step counts, and
 * the lr: the bf16 losses and weights alone miss a 1e-6 change) must equal (a)'s bit for bit: a
 * difference is printed and makes the exit status 1.
 *   node --import tsx bench/gpu_engine_step.ts [--smoke] [--rounds 7] [--steps 10] [--json FILE]
 * --smoke: GPT tiny at 2 x 16 and 1 x 16, 2 rounds of 2 steps, for the plumbing on the emulated
 * device (timings mean nothing there).
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { GPT, gptConfig } from '../models/index.ts';
import { engineTesting } from '../src/engine/decided_step.ts';
import {
  type CudaGraph, captureCudaGraph, copyInPlace, crossEntropy, cudaDeviceProperties, cudaIsAvailable, cudaSyncCount, cudaSynchronize, destroyDistributed,
  initDistributed, initialize, manualSeed, native, noGrad, Optimizer, type Tensor, tensor, tidy,
} from '../src/index.ts';
import { DEV, deviceSeconds } from './gpu_timing.ts';
import { median } from './timing.ts';

const argv = process.argv.slice(2);
const smoke = argv.includes('--smoke');
const flag = (name: string, dflt: number): number => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
};
const ROUNDS = flag('--rounds', smoke ? 2 : 7);
const STEPS = flag('--steps', smoke ? 2 : 10);
/** Steps whose losses are read and compared with (a)'s (they warm up too; (c) captures at step 1). */
const CHECKED = 3;
const SIZE = smoke ? 'tiny' : '124M';
const SHAPES: [number, number][] = smoke ? [[2, 16], [1, 16]] : [[8, 1024], [1, 1024]];

type Mode = 'a' | 'b' | 'c';
const LABELS: Record<Mode, string> = { a: '(a) host-decided eager', b: '(b) device-decided eager', c: '(c) whole step graphed' };

/** DeepSpeed's GPT-2 recipe (Megatron-DeepSpeed's examples), one rank. */
function dsConfig(batch: number): Record<string, unknown> {
  return {
    train_batch_size: batch, train_micro_batch_size_per_gpu: batch, gradient_clipping: 1.0,
    optimizer: { type: 'AdamW', params: { lr: 6e-4, betas: [0.9, 0.95], weight_decay: 0.1 } },
    scheduler: { type: 'WarmupDecayLR', params: { warmup_min_lr: 0, warmup_max_lr: 6e-4, warmup_num_steps: 20, total_num_steps: 20000 } },
    zero_optimization: { stage: 0 }, bf16: { enabled: true },
  };
}

/** One mode's engine on fixed batches; `step(k)` trains on batch k % 2 and returns the loss when `read` (a synchronization). */
interface Runner {
  step(k: number, read: boolean): number;
  /** SHA-256 of the training state: weights, optimizer state, lr (a synchronization). */
  state(): string;
  dispose(): void;
}

async function runner(mode: Mode, batch: number, seq: number): Promise<Runner> {
  manualSeed(0);
  const config = gptConfig(SIZE, { dtype: 'bf16', dropout: 0 });
  const model = new GPT(config);
  const { engine, optimizer } = await initialize({ model, config: dsConfig(batch), device: DEV, log: () => {} });
  const V = config.vocabSize;
  const batches = [0, 1].map((b) =>
    noGrad(() => [
      tensor(Array.from({ length: batch * seq }, (_, i) => (i * 7919 + b * 31337) % V), { dtype: 'i32', shape: [batch, seq], device: DEV }),
      tensor(Array.from({ length: batch * seq }, (_, i) => (i * 104729 + b * 7) % V), { dtype: 'i64', device: DEV }),
    ]),
  );
  const input = batches[0].map((t) => noGrad(() => t.clone()));
  const whole = () => {
    const l = crossEntropy(engine.forward(input[0]).reshape([batch * seq, V]), input[1]);
    engine.backward(l);
    engine.step();
    return l;
  };
  let graph: CudaGraph<Tensor> | null = null;
  return {
    step: (k, read) => {
      batches[k % 2].forEach((t, i) => copyInPlace(input[i], t));
      if (mode === 'c' && k === 1) graph = captureCudaGraph(whole, { device: DEV, parameters: model.parameters() });
      if (graph) {
        const l = graph.replay();
        return read ? l.item() : Number.NaN;
      }
      engineTesting.hostDecides = mode === 'a';
      try {
        return tidy(() => {
          const l = whole();
          return read ? l.item() : Number.NaN;
        });
      } finally {
        engineTesting.hostDecides = false;
      }
    },
    state: () => {
      const h = createHash('sha256');
      for (const p of model.parameters()) h.update(new Uint8Array(p.toArray().buffer));
      if (!(optimizer instanceof Optimizer)) throw new Error('bench/gpu_engine_step: ZeRO 0 should hand back an Optimizer');
      const sd = optimizer.stateDict();
      for (const [i, st] of Object.entries(sd.state)) {
        h.update(`${i}:${st.step}`);
        for (const [name, v] of Object.entries(st.buffers)) h.update(name).update(new Uint8Array(v.data.buffer, v.data.byteOffset, v.data.byteLength));
      }
      h.update(JSON.stringify(engine.getLr()));
      return h.digest('hex');
    },
    dispose: () => {
      graph?.dispose();
      engine.destroy();
      model.dispose();
      for (const t of [...input, ...batches.flat()]) t.dispose();
    },
  };
}

interface Round {
  deviceMs: number;
  hostMs: number;
  syncsPerStep: number;
}

/** STEPS steps from step k0, after the device has drained: device and host ms per step, host waits per step. */
function timeRound(r: Runner, k0: number): Round {
  cudaSynchronize(DEV); // no earlier work queued: the host starts level with the device
  let hostMs = 0;
  let syncs = 0;
  const s = deviceSeconds(() => {
    const c0 = cudaSyncCount(DEV);
    const t0 = performance.now();
    for (let i = 0; i < STEPS; i++) r.step(k0 + i, false);
    hostMs = performance.now() - t0;
    syncs = cudaSyncCount(DEV) - c0;
  });
  return { deviceMs: (s * 1e3) / STEPS, hostMs: hostMs / STEPS, syncsPerStep: syncs / STEPS };
}

interface ModeResult {
  mode: Mode;
  label: string;
  status: 'ok' | 'skipped' | 'failed';
  note?: string;
  losses: number[];
  /** SHA-256 of the training state after those steps (Runner.state). */
  state: string;
  /** Whether `losses` and `state` equal (a)'s bit for bit. */
  equalA?: boolean;
  rounds: Round[];
  /** (a)'s device ms over this mode's, per round. */
  ratios: number[];
}

const errorLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0];

async function benchShape(batch: number, seq: number): Promise<ModeResult[]> {
  const decided = native.cuda?.optimDecision === true;
  const results: ModeResult[] = (['a', 'b', 'c'] as Mode[]).map((mode) => ({ mode, label: LABELS[mode], status: 'ok', losses: [], state: '', rounds: [], ratios: [] }));
  const runners = new Map<Mode, Runner>();
  try {
    for (const res of results) {
      if (res.mode !== 'a' && !decided) {
        res.status = 'skipped';
        res.note = 'the addon has no cuda.optimDecision (the device-decided step is not built): (b) would be host-decided, (c) is refused';
        continue;
      }
      try {
        const r = await runner(res.mode, batch, seq);
        runners.set(res.mode, r);
        for (let k = 0; k < CHECKED; k++) res.losses.push(r.step(k, true));
        res.state = r.state();
      } catch (e) {
        res.status = 'failed';
        res.note = errorLine(e);
        if (e instanceof Error && e.stack) console.log(e.stack.split('\n').slice(0, 6).join('\n'));
      }
    }
    const a = results[0];
    for (const res of results.slice(1)) {
      if (res.status === 'ok' && a.status === 'ok') {
        res.equalA = res.state === a.state && res.losses.length === a.losses.length && res.losses.every((l, i) => Object.is(l, a.losses[i]));
      }
    }
    const live = results.filter((r) => runners.has(r.mode) && r.status === 'ok');
    for (let round = 0; round < ROUNDS; round++) {
      // The order rotates, so no mode always follows the same one.
      for (let j = 0; j < live.length; j++) {
        const res = live[(round + j) % live.length];
        res.rounds.push(timeRound(runners.get(res.mode) as Runner, CHECKED + round * STEPS));
      }
    }
    if (a.rounds.length > 0) for (const res of live) res.ratios = res.rounds.map((r, i) => a.rounds[i].deviceMs / r.deviceMs);
    return results;
  } finally {
    for (const r of runners.values()) r.dispose();
  }
}

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const pick = (res: ModeResult, key: keyof Round) => res.rounds.map((r) => r[key]);
const spread = (xs: number[], d = 2) => (xs.length ? `${fmt(median(xs), d)} (${fmt(Math.min(...xs), d)}-${fmt(Math.max(...xs), d)})` : '-');

function print(batch: number, seq: number, results: ModeResult[]): string {
  console.log(
    `\nGPT-2 ${SIZE} bf16, initialize() ZeRO 0, AdamW lr 6e-4 betas 0.9/0.95 wd 0.1, clipping 1.0, WarmupDecayLR; batch ${batch} x ${seq}: ` +
      `${ROUNDS} rounds of ${STEPS} steps per mode, interleaved; medians (min-max)`,
  );
  console.log(`  ${'mode'.padEnd(26)}${'device ms/step'.padEnd(24)}${'host ms/step'.padEnd(24)}${'waits/step'.padEnd(12)}${'(a)/mode'.padEnd(24)}first ${CHECKED} steps`);
  for (const res of results) {
    if (res.status !== 'ok') {
      console.log(`  ${res.label.padEnd(26)}${res.status}: ${res.note}`);
      continue;
    }
    const mine = `[${res.losses.join(', ')}], state ${res.state.slice(0, 12)}`;
    const same = res.mode === 'a' || res.equalA === undefined ? mine : res.equalA ? "losses and state equal (a)'s bit for bit" : `DIFFER from (a)'s: ${mine}`;
    console.log(
      `  ${res.label.padEnd(26)}${spread(pick(res, 'deviceMs')).padEnd(24)}${spread(pick(res, 'hostMs')).padEnd(24)}` +
        `${fmt(median(pick(res, 'syncsPerStep'))).padEnd(12)}${spread(res.ratios, 3).padEnd(24)}${same}`,
    );
  }
  const part = results
    .map((r) => `${r.mode} ${r.status === 'ok' ? `${fmt(median(pick(r, 'deviceMs')))}${r.mode === 'a' ? '' : ` x${fmt(median(r.ratios), 2)}`}` : r.status}`)
    .join(', ');
  return `${batch}x${seq} ${part}`;
}

async function main(): Promise<number> {
  if (!cudaIsAvailable()) {
    const info = native.deviceInfo();
    console.log(`SKIP bench/gpu_engine_step: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
    return 0;
  }
  console.log(`bench/gpu_engine_step on ${cudaDeviceProperties(DEV).name}${smoke ? ' (--smoke: timings mean nothing)' : ''}`);
  await initDistributed({ timeoutMs: 30_000 });
  const shapes: { batch: number; seq: number; modes: ModeResult[] }[] = [];
  const parts: string[] = [];
  try {
    for (const [batch, seq] of SHAPES) {
      const modes = await benchShape(batch, seq);
      shapes.push({ batch, seq, modes });
      parts.push(print(batch, seq, modes));
    }
  } finally {
    await destroyDistributed();
  }
  const all = shapes.flatMap((s) => s.modes);
  const differ = all.some((m) => m.equalA === false);
  const failed = all.some((m) => m.status === 'failed');
  const out = argv.indexOf('--json');
  if (out >= 0) writeFileSync(argv[out + 1], `${JSON.stringify({ device: cudaDeviceProperties(DEV).name, smoke, rounds: ROUNDS, steps: STEPS, shapes }, null, 1)}\n`);
  // Last line, gpu_check's key for this step.
  console.log(`engine_step ms/step, x (a)/mode: ${parts.join('; ')}; first steps ${differ ? 'DIFFER' : 'equal'}`);
  return differ || failed ? 1 : 0;
}

process.exitCode = await main();
