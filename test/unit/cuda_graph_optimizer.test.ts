/**
 * The optimizer step inside a CUDA graph (src/optim/graph_step.ts): forward, backward and
 * `opt.step()` captured once and replayed equal the same steps run eagerly, bit for bit (losses,
 * every weight and buffer, the optimizer's state and step counts): AdamW on a bf16 GPT (fp32
 * masters), also with an lr schedule changing the lr at every step and with two param groups of
 * different weight decay, and with the schedule stepped inside the captured function (it runs at
 * each replay: WarmupLR, OneCycle cycling beta1); SGD with momentum, Nesterov and weight decay, and Adam with L2 decay, on
 * an f32 conv net. Each replay writes its step's scalars from the host state: a prologue that skips
 * the write, or that does not advance the step count, makes the AdamW replays differ (negative
 * controls). Gradient clipping captured with them (clipGradNormOnDevice) equals eager steps clipped by
 * it and by clipGradNorm. Refused with errors naming the parameter: a capture before the state exists, CPU
 * parameters, a non-contiguous gradient, a replay after a parameter's .grad was set to null
 * (weights and state untouched). A replay is two device ops: one kernel writing the scalars, the
 * graph. Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  Adam, AdamW, type CudaGraph, captureCudaGraph, censusTotals, clipGradNorm, clipGradNormOnDevice, copyInPlace, cudaAllocatorStats, cudaCensus, cudaIsAvailable, type LRScheduler, type Module, native, OneCycle, type Optimizer, randn, SGD,
  type Tensor, WarmupLR,
} from '../../src/index.ts';
import { graphStepTesting } from '../../src/optim/graph_step.ts';
import { tensorBytes } from '../helpers/bits.ts';
import { convBatch, convLoss, convModel, DEV, gptBatch, gptLoss, gptModel } from '../helpers/graph_models.ts';

const STEPS = 4;

type AnyOptimizer = Optimizer<{ lr: number }>;

interface Setup {
  model: Module;
  opt: AnyOptimizer;
  inputs: Tensor[];
  /** Runs before step s (an lr schedule). */
  before?: (s: number) => void;
  /** Runs inside the step, after opt.step() (a schedule stepped there: captured, so run at each replay). */
  after?: () => void;
  /** Runs inside the step between backward and opt.step() (gradient clipping). */
  clip?: () => void;
}

interface Result {
  losses: number[];
  /** Every parameter's and buffer's bytes, then each optimizer state tensor's, then the step counts. */
  state: Buffer[];
}

/** The optimizer's state as bytes: each parameter's step count and state tensors, from stateDict. */
function optimizerBytes(opt: AnyOptimizer): Buffer[] {
  const sd = opt.stateDict();
  return Object.values(sd.state).flatMap((ps) => [
    Buffer.from(Float64Array.of(ps.step).buffer),
    ...Object.values(ps.buffers).map((v) => Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength)),
  ]);
}

/**
 * `STEPS` steps on fixed batches. With `graph`, step 0 runs eagerly (it creates the optimizer's
 * state), then forward, backward and step are captured with the gradients set to none (the
 * capture's backward creates them, each replay overwrites them) and replayed for the other steps.
 */
function train(graph: boolean, make: () => Setup, batch: (s: number) => Tensor[], loss: (m: Module, inputs: Tensor[]) => Tensor): Result {
  const { model, opt, inputs, before, after, clip } = make();
  const step = () => {
    const l = loss(model, inputs);
    l.backward();
    clip?.();
    opt.step();
    after?.();
    return l;
  };
  const losses: number[] = [];
  let g: CudaGraph<Tensor> | null = null;
  for (let s = 0; s < STEPS; s++) {
    batch(s).forEach((b, i) => copyInPlace(inputs[i], b));
    before?.(s);
    if (graph && s === 1) {
      opt.zeroGrad({ setToNone: true });
      g = captureCudaGraph(step);
    }
    const l = g ? g.replay() : step();
    losses.push(l.item());
    if (!g) {
      l.dispose();
      opt.zeroGrad({ setToNone: false });
    }
  }
  g?.dispose();
  const state = [...[...model.parameters(), ...model.buffers()].map(tensorBytes), ...optimizerBytes(opt)];
  return { losses, state };
}

function same(a: Result, b: Result): boolean {
  return a.losses.every((l, i) => Object.is(l, b.losses[i])) && a.state.length === b.state.length && a.state.every((x, i) => x.equals(b.state[i]));
}

function assertSame(eager: Result, graphed: Result, what: string): void {
  assert.equal(graphed.losses, eager.losses, `${what}: losses`);
  assert.ok(new Set(eager.losses).size > 1, `${what}: the steps saw different batches`);
  assert.is(graphed.state.length, eager.state.length);
  graphed.state.forEach((b, i) => assert.ok(b.equals(eager.state[i]), `${what}: weight, buffer or optimizer state #${i} differs`));
}

function gptAdamW(): Setup {
  const { model, inputs } = gptModel();
  return { model, opt: new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0.1 }), inputs };
}

const gptRun = (graph: boolean, make: () => Setup = gptAdamW) => train(graph, make, gptBatch, gptLoss);

if (!cudaIsAvailable()) {
  test('optimizer steps in CUDA graphs', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_graph_optimizer: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('bf16 GPT, AdamW in the graph: replays equal eager steps bit for bit (weights, masters, moments, step counts)', () => {
    assertSame(gptRun(false), gptRun(true), 'GPT AdamW');
  });

  test('an lr schedule (WarmupLR) changing the lr at every replay is honored', () => {
    const scheduled = (): Setup => {
      const s = gptAdamW();
      const sched = new WarmupLR(s.opt, { warmup_min_lr: 1e-3, warmup_max_lr: 2e-2, warmup_num_steps: STEPS, warmup_type: 'linear' });
      return { ...s, before: () => sched.step() };
    };
    const eager = gptRun(false, scheduled);
    assertSame(eager, gptRun(true, scheduled), 'GPT AdamW with WarmupLR');
    assert.not.ok(same(eager, gptRun(false)), 'the schedule changed the results');
  });

  test('a schedule stepped inside the captured function runs at each replay (WarmupLR; OneCycle cycling AdamW betas); a batchIteration there is refused', () => {
    const inside = (mk: (opt: AnyOptimizer) => LRScheduler) => (): Setup => {
      const s = gptAdamW();
      const sched = mk(s.opt);
      return { ...s, after: () => sched.step() };
    };
    const warmup = inside((opt) => new WarmupLR(opt, { warmup_min_lr: 1e-3, warmup_max_lr: 2e-2, warmup_num_steps: STEPS, warmup_type: 'linear' }));
    const eager = gptRun(false, warmup);
    assertSame(eager, gptRun(true, warmup), 'GPT AdamW, WarmupLR stepped in the graph');
    assert.not.ok(same(eager, gptRun(false)), 'the schedule changed the results');
    const cycle = inside((opt) => new OneCycle(opt, { cycle_min_lr: 1e-3, cycle_max_lr: 2e-2, cycle_first_step_size: 2, cycle_min_mom: 0.8, cycle_max_mom: 0.95 }));
    assertSame(gptRun(false, cycle), gptRun(true, cycle), 'GPT AdamW, OneCycle (lr and beta1) stepped in the graph');
    const s = gptAdamW();
    const sched = new WarmupLR(s.opt, { warmup_num_steps: 4 });
    assert.throws(() => captureCudaGraph(() => sched.step(7)), /WarmupLR\.step\(7\) inside captureCudaGraph: each replay advances to the next batch; pass no batchIteration/);
    assert.is(sched.lastBatchIteration, -1, 'the refused capture advanced nothing');
  });

  test('two param groups (weight decay 0.1 on matrices, 0 elsewhere)', () => {
    const grouped = (): Setup => {
      const { model, inputs } = gptModel();
      const ps = model.parameters();
      const opt = new AdamW([{ params: ps.filter((p) => p.shape.length >= 2), weightDecay: 0.1 }, { params: ps.filter((p) => p.shape.length < 2), weightDecay: 0 }], { lr: 1e-2 });
      return { model, opt: opt, inputs };
    };
    assertSame(gptRun(false, grouped), gptRun(true, grouped), 'GPT AdamW, two groups');
  });

  test('gradient clipping in the graph (clipGradNormOnDevice below the norm): replays equal eager steps with it, and with clipGradNorm', () => {
    const clipped = (clip: (ps: Tensor[]) => void) => (): Setup => {
      const s = gptAdamW();
      const ps = s.model.parameters();
      return { ...s, clip: () => clip(ps) };
    };
    const onDevice = clipped((ps) => clipGradNormOnDevice(ps, 0.05).dispose());
    const eager = gptRun(false, onDevice);
    assertSame(eager, gptRun(true, onDevice), 'GPT AdamW clipped by clipGradNormOnDevice');
    assertSame(eager, gptRun(false, clipped((ps) => clipGradNorm(ps, 0.05))), 'the same eager steps clipped by clipGradNorm');
    assert.not.ok(same(eager, gptRun(false)), 'the clipping changed the results');
  });

  test('f32 conv net: SGD (momentum, Nesterov, weight decay) and Adam (L2) in the graph equal eager steps', () => {
    const withOpt = (mk: (ps: Tensor[]) => AnyOptimizer) => (): Setup => {
      const { model, inputs } = convModel();
      return { model, opt: mk(model.parameters()), inputs };
    };
    const sgd = withOpt((ps) => new SGD(ps, { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-2 }));
    assertSame(train(false, sgd, convBatch, convLoss), train(true, sgd, convBatch, convLoss), 'conv net SGD');
    const adam = withOpt((ps) => new Adam(ps, { lr: 1e-2, weightDecay: 1e-2 }));
    assertSame(train(false, adam, convBatch, convLoss), train(true, adam, convBatch, convLoss), 'conv net Adam');
  });

  test('negative controls: a replay that skips writing the scalars, or advancing the step count, differs', () => {
    const eager = gptRun(false);
    for (const hook of ['skipWrite', 'skipAdvance'] as const) {
      graphStepTesting[hook] = true;
      try {
        assert.not.ok(same(eager, gptRun(true)), `${hook}: the replays should differ`);
      } finally {
        graphStepTesting[hook] = false;
      }
    }
  });

  test("a capture before a parameter's first step is refused naming it, nothing kept; eager steps work after", () => {
    const { model, opt, inputs } = gptAdamW();
    const held = cudaAllocatorStats(DEV).graphBytes;
    const step = () => {
      const l = gptLoss(model, inputs);
      l.backward();
      opt.step();
      return l;
    };
    const refused = (i: number) =>
      new RegExp(`AdamW\\.step inside captureCudaGraph \\(capturing cuda:0\\): param group 0, params\\[${i}\\] .* has no optimizer state yet .*run one step eagerly before capturing`);
    assert.throws(() => captureCudaGraph(step), refused(0));
    assert.equal(Object.keys(opt.stateDict().state).length, 0, 'the capture created no state');
    // A first step without parameter 3's gradient: its state is still missing.
    const l = gptLoss(model, inputs);
    l.backward();
    l.dispose();
    model.parameters()[3].grad = null;
    opt.step();
    opt.zeroGrad();
    assert.throws(() => captureCudaGraph(step), refused(3));
    assert.is(cudaAllocatorStats(DEV).graphBytes, held, 'no pool left behind');
    step().dispose();
    const steps = Object.values(opt.stateDict().state).map((ps) => ps.step);
    assert.equal(steps, model.parameters().map((_, i) => (i === 3 ? 1 : 2)), 'the refused captures advanced nothing');
  });

  test('CPU parameters and a non-contiguous gradient are refused, naming them', () => {
    const cpu = randn([4]).requiresGrad_(true);
    cpu.grad = randn([4]);
    const onCpu = new SGD([cpu], { lr: 0.1 });
    onCpu.step();
    assert.throws(() => captureCudaGraph(() => onCpu.step()), /SGD\.step inside captureCudaGraph \(capturing cuda:0\): param group 0's parameters are on cpu/);
    const p = randn([3, 3], { device: DEV }).requiresGrad_(true);
    p.grad = randn([3, 3], { device: DEV });
    const opt = new SGD([p], { lr: 0.1 });
    opt.step();
    p.grad = randn([3, 3], { device: DEV }).transpose(0, 1);
    assert.throws(() => captureCudaGraph(() => opt.step()), /SGD\.step: param group 0, params\[0\] .* inside captureCudaGraph: its grad is not contiguous/);
  });

  test('a replay after a parameter lost its .grad throws naming it, before writing anything', () => {
    const { model, opt, inputs } = gptAdamW();
    const step = () => {
      const l = gptLoss(model, inputs);
      l.backward();
      opt.step();
      return l;
    };
    step().dispose();
    opt.zeroGrad();
    const g = captureCudaGraph(step);
    const replay = censusTotals(cudaCensus(() => g.replay()).entries);
    assert.equal([replay.graph, replay.deviceOps], [1, 2], "a replay: its step's scalars written by one kernel, then the graph");
    const before = [...model.parameters().map(tensorBytes), ...optimizerBytes(opt)];
    const p = model.parameters()[3];
    p.grad = null;
    assert.throws(() => g.replay(), /CudaGraph\.replay: AdamW\.step: param group 0, params\[3\] .*: its \.grad is null since the capture/);
    const after = [...model.parameters().map(tensorBytes), ...optimizerBytes(opt)];
    after.forEach((b, i) => assert.ok(b.equals(before[i]), `weight or state #${i} changed`));
    g.dispose();
  });
}

test.run();
