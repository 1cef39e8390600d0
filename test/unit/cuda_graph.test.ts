/**
 * CUDA graphs (src/tensor/cuda_graph.ts, native/cuda/cuda_graph.cc): a training step's forward
 * and backward captured once and replayed equal the same steps run eagerly, bit for bit (losses,
 * every weight, batch norm's running statistics), for a bf16 GPT (embedding, attention, layer
 * norm, fused GELU linear, cross-entropy; AdamW) and a small f32 conv net (cuDNN convolutions,
 * batch norm, residual add, pooling; SGD with momentum). A replay is one host call (census) for
 * as many nodes as the device ops queued during its capture. A zero-grad inside the capture lets
 * its backward overwrite; one outside makes it add (gradient accumulation). The graph's memory is its own: tensors allocated
 * after the capture keep their values through replays. Index checks are re-armed by each replay;
 * host waits, CPU kernels, host-drawn random numbers and nested captures are refused with errors naming them, and
 * a failed capture leaves nothing behind. Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  AdamW, type CudaGraph, captureCudaGraph, censusTotals, copyInPlace, cudaAllocatorStats, cudaCensus, cudaIsAvailable, dropout, type Module, manualSeed,
  native, randn, SGD, type Tensor, tensor,
} from '../../src/index.ts';
import { tensorBytes } from '../helpers/bits.ts';
import { B, convBatch, convLoss, convModel, DEV, gptBatch, gptLoss, gptModel, T, V } from '../helpers/graph_models.ts';

const STEPS = 4;

const bits = tensorBytes;

interface Run {
  losses: number[];
  state: Buffer[];
  graph: CudaGraph<Tensor> | null;
}

/**
 * Trains `STEPS` steps on fixed batches; with `graph`, step 0 runs eagerly (the warm-up) and the
 * others replay a graph captured before step 1 with the gradients set to none, so that the captured
 * backward creates them and each replay overwrites them: no zero-grad between replays (the
 * recipe of docs/gpu.md). `batch(s)` gives host tensors copied into the step's static inputs.
 */
function train(
  graph: boolean,
  make: () => { model: Module; opt: { step(): void; zeroGrad(o: { setToNone: boolean }): void }; inputs: Tensor[] },
  batch: (s: number) => Tensor[],
  loss: (model: Module, inputs: Tensor[]) => Tensor,
): Run {
  const { model, opt, inputs } = make();
  const step = () => {
    const l = loss(model, inputs);
    l.backward();
    return l;
  };
  const losses: number[] = [];
  let g: CudaGraph<Tensor> | null = null;
  for (let s = 0; s < STEPS; s++) {
    batch(s).forEach((b, i) => copyInPlace(inputs[i], b));
    if (graph && s === 1) {
      opt.zeroGrad({ setToNone: true });
      g = captureCudaGraph(step, { parameters: model.parameters() });
    }
    const l = g ? g.replay() : step();
    losses.push(l.item());
    if (!g) l.dispose();
    opt.step();
    if (!g) opt.zeroGrad({ setToNone: false });
  }
  const state = [...model.parameters(), ...model.buffers()].map(bits);
  return { losses, state, graph: g };
}

function assertSame(eager: Run, graphed: Run, what: string): void {
  assert.equal(graphed.losses, eager.losses, `${what}: losses`);
  assert.is(graphed.state.length, eager.state.length);
  graphed.state.forEach((b, i) => assert.ok(b.equals(eager.state[i]), `${what}: parameter or buffer #${i} differs`));
}

function gpt() {
  const { model, inputs } = gptModel();
  return { model, opt: new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0.1 }), inputs };
}

function convNet() {
  const { model, inputs } = convModel();
  return { model, opt: new SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }), inputs };
}

test('bad devices are errors naming them, on any build', () => {
  assert.throws(() => captureCudaGraph(() => 0, { device: 'cpu' }), /captureCudaGraph: CUDA graphs capture a CUDA device's work, got device 'cpu'/);
  assert.throws(() => captureCudaGraph(() => 0, { device: 'gpu' as 'cpu' }), /captureCudaGraph: unknown device "gpu"/);
});

if (!cudaIsAvailable()) {
  test('CUDA graphs', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_graph: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('bf16 GPT: replayed steps equal eager steps bit for bit; a replay is one host call', () => {
    const eager = train(false, gpt, gptBatch, gptLoss);
    const graphed = train(true, gpt, gptBatch, gptLoss);
    assertSame(eager, graphed, 'GPT');
    const g = graphed.graph as CudaGraph<Tensor>;
    const replay = censusTotals(cudaCensus(() => g.replay()).entries);
    assert.is(replay.graph, 1);
    assert.is(replay.deviceOps, 1, 'a replay queues one graph launch and nothing else');
    console.log(`  GPT tiny step: ${g.nodes} graph nodes, 1 host call per replay; losses ${eager.losses.map((l) => l.toFixed(4)).join(' ')}`);
    assert.ok(g.nodes > 100, `${g.nodes} nodes`);
    g.dispose();
  });

  test('f32 conv net (cuDNN, batch norm): replays equal eager steps bit for bit, running statistics included', () => {
    const eager = train(false, convNet, convBatch, convLoss);
    const graphed = train(true, convNet, convBatch, convLoss);
    assertSame(eager, graphed, 'conv net');
    graphed.graph?.dispose();
  });

  test("the graph's memory is its own: tensors allocated after the capture survive replays", () => {
    const { model, inputs } = convNet();
    const step = () => {
      const l = convLoss(model, inputs);
      l.backward();
      return l;
    };
    step().dispose(); // warm-up
    const g = captureCudaGraph(step, { parameters: model.parameters() });
    const held = cudaAllocatorStats(DEV).graphBytes;
    assert.ok(held > 0, 'the capture freed temporaries into its pool');
    // Eager tensors of every size class up to 32 KiB, three each, allocated now: none may be a block the graph writes.
    manualSeed(9);
    const after = Array.from({ length: 192 }, (_, i) => randn([128 * (1 + (i % 64))], { device: DEV }));
    const before = after.map(bits);
    for (let r = 0; r < 3; r++) g.replay();
    after.forEach((t, i) => assert.ok(bits(t).equals(before[i]), `tensor #${i} was overwritten by a replay`));
    g.dispose();
    assert.is(cudaAllocatorStats(DEV).graphBytes, 0, 'disposing the graph returns its pool');
    for (const t of after) t.dispose();
  });

  test('index checks are re-armed by each replay', () => {
    const { model, inputs } = gpt();
    const step = () => {
      const l = gptLoss(model, inputs);
      l.backward();
      return l;
    };
    step().dispose();
    // Everything the capture queued is in the graph: no op ran outside it.
    let g = null as unknown as CudaGraph<Tensor>;
    const queued = censusTotals(cudaCensus(() => (g = captureCudaGraph(step, { parameters: model.parameters() }))).entries).deviceOps;
    // The emulated runtime makes one node per op; on a GPU a library call may add kernels of its own
    // (cuBLASLt's split-K reduction, CUB's sort passes: the H200 run of stop 19 saw 140 nodes for 132 ops).
    const emulated = typeof (native as unknown as { cudaEmuApiCounts?: unknown }).cudaEmuApiCounts === 'function';
    if (emulated) assert.is(g.nodes, queued, 'graph nodes = device ops queued during the capture');
    else assert.ok(g.nodes >= queued, `graph nodes ${g.nodes} >= the ${queued} device ops queued during the capture`);
    g.replay().item();
    const bad = gptBatch(1)[0];
    const ids = bad.toArray() as BigInt64Array;
    ids[5] = BigInt(V + 3);
    copyInPlace(inputs[0], tensor(Array.from(ids, Number), { dtype: 'i64' }).reshape([B, T]));
    g.replay();
    assert.throws(() => g.replay().item(), /embedding: id 67 at position \[0, 5\]/);
    g.dispose();
  });

  test('refused in a capture: host reads, CPU kernels, random ops, nesting; a failed capture keeps nothing', () => {
    const { model, inputs } = convNet();
    const step = () => convLoss(model, inputs);
    step().dispose();
    const held = cudaAllocatorStats(DEV).graphBytes;
    assert.throws(() => captureCudaGraph(() => step().item()), /captureCudaGraph: the capture failed, nothing was kept: cuda:0: the host would wait for the device/);
    assert.throws(() => captureCudaGraph(() => randn([3]).add(1)), /random op \(dropout, rand, randn\) inside captureCudaGraph \(capturing cuda:0\)/);
    const cpu = randn([4]);
    // Dropout on the device is replayed with fresh masks (cuda_graph_dropout); on the CPU it is refused.
    assert.throws(() => captureCudaGraph(() => dropout(cpu, 0.5, true)), /random op/);
    assert.throws(() => captureCudaGraph(() => cpu.mul(2)), /CPU kernel \w+ inside captureCudaGraph/);
    assert.throws(() => captureCudaGraph(() => captureCudaGraph(step)), /captures do not nest/);
    assert.is(cudaAllocatorStats(DEV).graphBytes, held, 'the failed captures left no pool behind');
    // The stream is out of capture mode: eager work and a new capture run.
    const l = step();
    assert.ok(Number.isFinite(l.item()));
    const g = captureCudaGraph(step);
    assert.ok(Math.abs(g.replay().item() - l.item()) < 1e-6);
    g.dispose();
    l.dispose();
  });

  test('gradient accumulation: two replays per step add into .grad as two eager backward passes do', () => {
    const run = (graph: boolean) => {
      const { model, opt, inputs } = convNet();
      const step = () => {
        const l = convLoss(model, inputs);
        l.backward();
        return l;
      };
      let g: CudaGraph<Tensor> | null = null;
      for (let s = 0; s < 3; s++) {
        for (let micro = 0; micro < 2; micro++) {
          convBatch(2 * s + micro).forEach((b, i) => copyInPlace(inputs[i], b));
          if (graph && s === 1 && micro === 0) g = captureCudaGraph(step, { parameters: model.parameters() });
          if (g) g.replay();
          else step().dispose();
        }
        opt.step();
        opt.zeroGrad({ setToNone: false }); // marks the gradients zero: an eager backward then overwrites
      }
      g?.dispose();
      return model.parameters().map(bits);
    };
    const eager = run(false);
    run(true).forEach((b, i) => assert.ok(b.equals(eager[i]), `parameter #${i} differs`));
  });

  test('zero-grad inside the capture: the captured backward overwrites (fewer nodes), replays equal eager steps', () => {
    const eager = train(false, convNet, convBatch, convLoss);
    const { model, opt, inputs } = convNet();
    const forwardBackward = () => {
      const l = convLoss(model, inputs);
      l.backward();
      return l;
    };
    const zeroForwardBackward = () => {
      opt.zeroGrad({ setToNone: false });
      return forwardBackward();
    };
    const losses: number[] = [];
    let g: CudaGraph<Tensor> | null = null;
    for (let s = 0; s < STEPS; s++) {
      convBatch(s).forEach((b, i) => copyInPlace(inputs[i], b));
      if (s === 1) g = captureCudaGraph(zeroForwardBackward, { parameters: model.parameters() });
      const l = g ? g.replay() : forwardBackward();
      losses.push(l.item());
      if (!g) l.dispose();
      opt.step();
      if (!g) opt.zeroGrad({ setToNone: false });
    }
    assertSame(eager, { losses, state: [...model.parameters(), ...model.buffers()].map(bits), graph: g }, 'zero inside');
    // The same backward captured after an outside zero-grad adds into every gradient instead; with
    // no gradients at all it creates them (the first one adopted: the fewest nodes).
    const adding = captureCudaGraph(forwardBackward, { parameters: model.parameters() });
    opt.zeroGrad({ setToNone: true });
    const creating = captureCudaGraph(forwardBackward, { parameters: model.parameters() });
    const fills = model.parameters().length;
    console.log(`  conv net: ${g?.nodes} nodes with the zero-grad inside (${fills} fills), ${adding.nodes} adding, ${creating.nodes} creating`);
    assert.ok((g as CudaGraph<Tensor>).nodes < adding.nodes + fills, 'overwriting saves the adds');
    assert.ok(creating.nodes < adding.nodes, 'adopting saves the adds');
    for (const x of [g, adding, creating]) x?.dispose();
  });

  test(".grad replaced since the capture: the replay refuses, naming the parameter", () => {
    const { model, opt, inputs } = convNet();
    const step = () => {
      const l = convLoss(model, inputs);
      l.backward();
      return l;
    };
    step().dispose();
    const g = captureCudaGraph(step, { parameters: model.parameters() });
    g.replay();
    opt.zeroGrad({ setToNone: true });
    assert.throws(() => g.replay(), /CudaGraph\.replay: parameter #0 .*'s \.grad is null since the capture.*zeroGrad\(\{ setToNone: false \}\)/);
    g.dispose();
    assert.throws(() => g.replay(), /the graph was disposed/);
  });
}

test.run();
