/**
 * engine.step() decided on the device (src/engine/decided_step.ts): at ZeRO stages 0-3 on cuda:0 the
 * overflow check and the clip factor are computed on the device and the optimizer's launches obey
 * them (stages 1-3: each partition's, src/zero/decided_step.ts), with no host read; the host learns the outcome later and takes a skipped step back. It must
 * equal the host-decided step (`engineTesting.hostDecides`, which reads the sums back) bit for bit:
 * losses, the loss-scale trace, skipped steps, the lr schedule, the last norm and every weight.
 * - fp16 (dynamic scale from 2^20, window 2): the first steps overflow, and a later one after the
 *   optimizer has state, so the device skips it and the host takes back the step counts and the
 *   WarmupLR position it had advanced.
 * - bf16 AdamW with clipping and a schedule; f32 SGD (momentum, Nesterov) with clipping.
 * - Each at stage 0 (the optimizer's step) and stages 1, 2, 3 (the partitions' step, then the gather).
 * - Host waits: a decided step waits for nothing (the host-decided one once per step); fp16's
 *   backward waits for nothing either, its dynamic scale being on the device (device_loss_scale.ts).
 * - ZeroStage12 / ZeroStage3.stepDecided refuse a host decision, state not made yet and offload, naming why.
 * Without a device: one SKIP line.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/index.ts';
import { engineTesting } from '../../src/engine/decided_step.ts';
import {
  AdamW, crossEntropy, cudaIsAvailable, cudaSyncCount, type DynamicLossScaler, destroyDistributed, initDistributed, initialize, manualSeed, native, randn, type Tensor, tensor, tidy,
  ZeroStage3, ZeroStage12, zeros,
} from '../../src/index.ts';
import { moduleToDevice } from '../../src/nn/to_device.ts';
import { mulberry32 } from '../dist/fixtures/batches.ts';

const [ROWS, T, STEPS] = [4, 16, 8];
const DEV = 'cuda:0';

interface Case {
  dtype: 'f32' | 'bf16' | 'f16';
  optimizer: Record<string, unknown>;
  clip: number;
}

interface Run {
  losses: number[];
  scales: number[];
  skipped: number;
  lr: number[];
  norm: number;
  weights: Buffer;
  /** Host waits across each engine.step() after the first. */
  stepSyncs: number[];
  /** Decisions read back (readLaterTake) inside each engine.backward() after the first: the emulator's copies are always done, so a read never counts as a wait there. */
  backwardReads: number[];
  /** stepDecision launches. */
  decided: number;
}

function configOf(c: Case, stage: 0 | 1 | 2 | 3): Record<string, unknown> {
  return {
    train_batch_size: ROWS, train_micro_batch_size_per_gpu: ROWS, gradient_clipping: c.clip,
    optimizer: c.optimizer,
    scheduler: { type: 'WarmupLR', params: { warmup_min_lr: 0, warmup_max_lr: 3e-3, warmup_num_steps: 6 } },
    zero_optimization: { stage, reduce_bucket_size: 20_000, stage3_param_persistence_threshold: 100 },
    bf16: { enabled: c.dtype === 'bf16' },
    ...(c.dtype === 'f16' ? { fp16: { enabled: true, initial_scale_power: 20, hysteresis: 1, loss_scale_window: 2, min_loss_scale: 1 } } : {}),
  };
}

async function run(c: Case, stage: 0 | 1 | 2 | 3, hostDecides: boolean, readScales = true): Promise<Run> {
  manualSeed(1234);
  const model = new GPT(gptConfig('tiny', { dropout: 0, dtype: c.dtype }));
  const { engine } = await initialize({ model, config: configOf(c, stage), device: DEV, log: () => {} });
  const vocab = model.config.vocabSize;
  const rnd = mulberry32(5);
  const draw = () => Int32Array.from({ length: ROWS * T }, () => Math.floor(rnd() * vocab));
  const kept: Tensor[] = [];
  const out: Run = { losses: [], scales: [], skipped: 0, lr: [], norm: 0, weights: Buffer.alloc(0), stepSyncs: [], backwardReads: [], decided: 0 };
  const cuda = native.cuda;
  const decide = cuda.stepDecision;
  cuda.stepDecision = (...a: unknown[]) => {
    out.decided++;
    return decide(...a);
  };
  const take = cuda.readLaterTake;
  let reads = 0;
  cuda.readLaterTake = (...a: unknown[]) => {
    reads++;
    return take(...a);
  };
  engineTesting.hostDecides = hostDecides;
  try {
    for (let s = 0; s < STEPS; s++) {
      // The scale trace settles each step (a read); readScales false reads nothing until the end.
      if (c.dtype === 'f16' && readScales) out.scales.push(engine.lossScale);
      const loss = tidy(() => {
        const ids = tensor(draw(), { dtype: 'i32', shape: [ROWS, T] }).to(DEV);
        const tg = tensor(draw(), { dtype: 'i32', shape: [ROWS * T] }).to(DEV);
        const logits = engine.forward(ids) as Tensor;
        const l = crossEntropy((logits.dtype === 'f32' ? logits : logits.to('f32')).reshape([ROWS * T, vocab]), tg);
        const r0 = reads;
        engine.backward(l);
        if (s > 0) out.backwardReads.push(reads - r0);
        const before = cudaSyncCount(DEV);
        engine.step();
        if (s > 0) out.stepSyncs.push(cudaSyncCount(DEV) - before);
        return l.detach();
      });
      kept.push(loss);
    }
  } finally {
    engineTesting.hostDecides = false;
    cuda.stepDecision = decide;
    cuda.readLaterTake = take;
  }
  out.losses = kept.map((l) => l.item());
  for (const l of kept) l.dispose();
  out.skipped = engine.skippedSteps;
  out.lr = engine.getLr();
  out.norm = engine.lastGradNorm;
  out.scales.push(engine.lossScale);
  engine.destroy();
  out.weights = Buffer.concat(model.parameters().map((p) => Buffer.from(Float64Array.from(p.to('f64').toList() as number[]).buffer)));
  model.dispose();
  return out;
}

test.before(async () => {
  await initDistributed({ timeoutMs: 30_000 });
});
test.after(async () => {
  await destroyDistributed();
});

if (!cudaIsAvailable() || native.cuda?.optimDecision !== true) {
  test('engine steps decided on cuda:0', () => {
    const info = native.deviceInfo();
    const why = !cudaIsAvailable() ? `no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})` : 'the addon has no cuda.optimDecision';
    console.log(`SKIP test/unit/cuda_engine_decided: ${why}`);
  });
} else {
  const cases: (Case & { name: string })[] = [
    { name: 'fp16 AdamW, clipping, a dynamic scale', dtype: 'f16', optimizer: { type: 'AdamW', params: { lr: 3e-3, weight_decay: 0.01 } }, clip: 1.0 },
    { name: 'bf16 AdamW, clipping', dtype: 'bf16', optimizer: { type: 'AdamW', params: { lr: 3e-3, weight_decay: 0.01 } }, clip: 0.5 },
    { name: 'bf16 Adam (L2), no clipping', dtype: 'bf16', optimizer: { type: 'Adam', params: { lr: 3e-3, weight_decay: 0.01 } }, clip: 0 },
    {
      name: 'f32 SGD (momentum, Nesterov), clipping', dtype: 'f32', clip: 0.5,
      optimizer: { type: 'SGD', params: { lr: 3e-3, momentum: 0.9, nesterov: true, weight_decay: 0.01 } },
    },
  ];
  for (const stage of [0, 1, 2, 3] as const) for (const c of cases) {
    test(`stage ${stage}, ${c.name}: decided on the device equals decided on the host bit for bit, and waits for nothing`, async () => {
      const host = await run(c, stage, true);
      const dev = await run(c, stage, false);
      assert.is(host.decided, 0, 'the host-decided run launched no stepDecision');
      // Step s overflowed when the scale fell after it (hysteresis 1); the first step that ran creates the optimizer state,
      // and only the steps after it can be decided on the device.
      const overflowed = host.scales.slice(0, STEPS).map((v, s) => host.scales[s + 1] < v);
      const first = overflowed.indexOf(false);
      assert.is(host.skipped, overflowed.filter(Boolean).length, `skipped steps (scales ${host.scales.join(' ')})`);
      if (c.dtype === 'f16') assert.ok(overflowed.slice(first + 1).some(Boolean), `a step after the first that ran overflows (${overflowed.join(' ')})`);
      else assert.is(host.skipped, 0);
      assert.is(dev.decided, STEPS - first - 1, `steps decided on the device (${dev.decided})`);
      assert.equal(dev.scales, host.scales, 'loss-scale trace');
      assert.is(dev.skipped, host.skipped, 'skipped steps');
      assert.equal(dev.losses, host.losses, 'losses');
      assert.equal(dev.lr, host.lr, 'lr');
      assert.ok(Object.is(dev.norm, host.norm), `last norm ${dev.norm} vs ${host.norm}`);
      assert.ok(dev.weights.equals(host.weights), 'weights');
      assert.ok(host.stepSyncs.every((n) => n === 1), `the host-decided step reads once (${host.stepSyncs.join(' ')})`);
      // stepSyncs[i] is step i + 1's.
      const decidedWaits = dev.stepSyncs.slice(first);
      assert.ok(decidedWaits.every((n) => n === 0), `decided steps waited ${decidedWaits.join(' ')} times`);
      if (c.dtype === 'f16' && stage === 0) {
        // Reading nothing in the loop: fp16's scale lives on the device (device_loss_scale.ts), so backward reads no decision.
        const quiet = await run(c, stage, false, false);
        assert.equal(quiet.losses, host.losses, 'losses, no reads in the loop');
        assert.ok(quiet.weights.equals(host.weights), 'weights, no reads in the loop');
        assert.is(quiet.skipped, host.skipped);
        assert.ok(quiet.backwardReads.every((n) => n === 0), `backward read decisions ${quiet.backwardReads.join(' ')} times`);
        assert.ok(quiet.stepSyncs.slice(first).every((n) => n === 0), `decided steps waited ${quiet.stepSyncs.join(' ')} times`);
      }
    });
  }

  test('fp16: a checkpoint loaded into an engine whose scale is already on the device moves that copy too (bit for bit an uninterrupted run)', async () => {
    const c = cases[0];
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mt-decided-ck-'));
    const batch = (i: number) => {
      const rnd = mulberry32(100 + i);
      const draw = () => Int32Array.from({ length: ROWS * T }, () => Math.floor(rnd() * 64));
      return [tensor(draw(), { dtype: 'i32', shape: [ROWS, T] }).to(DEV), tensor(draw(), { dtype: 'i32', shape: [ROWS * T] }).to(DEV)];
    };
    const make = async (seed: number) => {
      manualSeed(seed);
      const model = new GPT(gptConfig('tiny', { dropout: 0, dtype: 'f16' }));
      const { engine } = await initialize({ model, config: configOf(c, 0), device: DEV, log: () => {} });
      const step = (i: number) =>
        tidy(() => {
          const [ids, tg] = batch(i);
          const l = crossEntropy((engine.forward(ids) as Tensor).to('f32').reshape([ROWS * T, 64]), tg);
          engine.backward(l);
          engine.step();
          return l.item();
        });
      return { model, engine, step };
    };
    try {
      const a = await make(1234);
      const want: number[] = [];
      for (let i = 0; i < 8; i++) {
        want.push(a.step(i));
        if (i === 3) await a.engine.saveCheckpoint(dir);
      }
      // Another run, whose own scale went on the device and moved, then loads step 4 of the first.
      const b = await make(99);
      for (let i = 0; i < 3; i++) b.step(20 + i);
      assert.is.not(b.engine.lossScale, 2 ** 20, 'its own scale moved');
      b.engine.loadCheckpoint(dir);
      const got = [4, 5, 6, 7].map((i) => b.step(i));
      assert.equal(got, want.slice(4), 'losses after the load');
      assert.is(b.engine.lossScale, a.engine.lossScale);
      assert.is(b.engine.skippedSteps, a.engine.skippedSteps);
      const bits = (m: GPT) => Buffer.concat(m.parameters().map((p) => Buffer.from(Float64Array.from(p.to('f64').toList() as number[]).buffer)));
      assert.ok(bits(b.model).equals(bits(a.model)), 'weights');
      for (const r of [a, b]) {
        r.engine.destroy();
        r.model.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('fp16: the scale changed on the host between steps (engine.lossScaler.curScale, loadStateDict) reaches the device copy: bit for bit the host-decided run doing the same', async () => {
    const c = cases[0];
    const once = async (hostDecides: boolean) => {
      manualSeed(1234);
      const model = new GPT(gptConfig('tiny', { dropout: 0, dtype: 'f16' }));
      const { engine } = await initialize({ model, config: configOf(c, 0), device: DEV, log: () => {} });
      const rnd = mulberry32(7);
      const draw = () => Int32Array.from({ length: ROWS * T }, () => Math.floor(rnd() * 64));
      const losses: number[] = [];
      const scales: number[] = [];
      engineTesting.hostDecides = hostDecides;
      try {
        for (let i = 0; i < 8; i++) {
          if (i === 3) (engine.lossScaler as DynamicLossScaler).curScale = 2 ** 8;
          if (i === 6) engine.lossScaler.loadStateDict({ curScale: 2 ** 12, curIter: 0, lastOverflowIter: -1, curHysteresis: 1 });
          losses.push(
            tidy(() => {
              const ids = tensor(draw(), { dtype: 'i32', shape: [ROWS, T] }).to(DEV);
              const tg = tensor(draw(), { dtype: 'i32', shape: [ROWS * T] }).to(DEV);
              const l = crossEntropy((engine.forward(ids) as Tensor).to('f32').reshape([ROWS * T, 64]), tg);
              engine.backward(l);
              engine.step();
              return l.item();
            }),
          );
          scales.push(engine.lossScale);
        }
      } finally {
        engineTesting.hostDecides = false;
      }
      const weights = Buffer.concat(model.parameters().map((p) => Buffer.from(Float64Array.from(p.to('f64').toList() as number[]).buffer)));
      const skipped = engine.skippedSteps;
      engine.destroy();
      model.dispose();
      return { losses, scales, skipped, weights };
    };
    const host = await once(true);
    const dev = await once(false);
    assert.ok(host.scales.includes(2 ** 8 * 2) || host.scales.includes(2 ** 8), `the host run took the set scale: ${host.scales}`);
    assert.equal(dev.scales, host.scales, 'scale trace');
    assert.equal(dev.losses, host.losses, 'losses');
    assert.is(dev.skipped, host.skipped);
    assert.ok(dev.weights.equals(host.weights), 'weights');
  });

  test('Optimizer.stepDecided refuses, naming why, before anything is queued: a decision that is not a device f64 pair, no state yet; not on another device', () => {
    manualSeed(1);
    const w = randn([4, 3]).to(DEV).requiresGrad_(true);
    const opt = new AdamW([w], { lr: 0.1 });
    w.grad = randn([4, 3]).to(DEV);
    const decision = zeros([3], { dtype: 'f64', device: DEV });
    const before = w.toArray();
    assert.throws(() => opt.stepDecided(decision), /AdamW\.stepDecided: param group 0 has no optimizer state yet: run one plain step first/);
    opt.step();
    const afterPlain = w.toArray();
    assert.ok(!afterPlain.every((v, i) => v === before[i]), 'the plain step moved the weight');
    assert.throws(() => opt.stepDecided(zeros([3], { dtype: 'f64' })), /AdamW\.stepDecided: the decision must be a live contiguous f64 tensor of at least 2 elements on a CUDA device/);
    assert.throws(() => opt.stepDecided(zeros([3], { dtype: 'f32', device: DEV })), /the decision must be a live contiguous f64 tensor/);
    assert.throws(() => opt.stepDecided(zeros([1], { dtype: 'f64', device: DEV })), /at least 2 elements/);
    assert.ok(w.toArray().every((v, i) => v === afterPlain[i]), 'a refused decided step wrote nothing');
    assert.is(opt.canStepDecided(DEV), true);
    assert.is(opt.canStepDecided('cpu'), false, 'its parameters are on cuda:0, not where a decision on the CPU would be');
    for (const t of [w, decision]) t.dispose();
  });

  test('ZeroStage12 / ZeroStage3.stepDecided refuse, naming why: a host decision, no state yet, offloaded state or parameters', () => {
    const decision = zeros([3], { dtype: 'f64', device: DEV });
    const host = zeros([3], { dtype: 'f64' });
    const o = (d: Tensor) => ({ unscale: 1, check: true, decision: d });
    const cases: [string, (m: GPT) => ZeroStage12 | ZeroStage3, RegExp][] = [
      ['stage 2', (m) => new ZeroStage12(m, { type: 'AdamW' }, { stage: 2 }), /^ZeroStage12\.stepDecided: the f32 partition: no optimizer state yet: run one plain step first$/],
      ['stage 3', (m) => new ZeroStage3(m, { type: 'AdamW' }), /^ZeroStage3\.stepDecided: the f32 partition: no optimizer state yet: run one plain step first$/],
      [
        'stage 2, offload_optimizer cpu', (m) => new ZeroStage12(m, { type: 'AdamW' }, { stage: 2, offloadOptimizer: { device: 'cpu' } }),
        /^ZeroStage12\.stepDecided: the f32 partition: the optimizer state is offloaded to cpu: the host updates it$/,
      ],
      [
        'stage 3, offload_param cpu', (m) => new ZeroStage3(m, { type: 'AdamW' }, { offloadParam: { device: 'cpu' } }),
        /^ZeroStage3\.stepDecided: the f32 partition: the partition is in host memory: the host updates it$/,
      ],
    ];
    for (const [name, make, why] of cases) {
      manualSeed(1);
      const model = moduleToDevice(new GPT(gptConfig('tiny', { dropout: 0 })), DEV);
      const zero = make(model);
      try {
        assert.is(zero.canStepDecided(), false, name);
        assert.throws(() => zero.stepDecided(o(host)), /stepDecided: the decision must be a live contiguous f64 tensor of at least 2 elements on a CUDA device/, `${name}: a host decision`);
        assert.throws(() => zero.stepDecided(o(decision)), why, name);
        assert.is(zero.steps, 0, `${name}: nothing advanced`);
      } finally {
        zero.destroy();
        model.dispose();
      }
    }
    decision.dispose();
    host.dispose();
  });
}

test.run();
