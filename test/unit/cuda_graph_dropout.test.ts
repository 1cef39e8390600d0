/**
 * Random ops inside CUDA graphs (src/tensor/graph_rng.ts): dropout and rand on the captured device
 * read the device's generator base, which each replay sets from the host generator, and each
 * replay advances the host generator by what the captured step consumed. Proven on a bf16 GPT
 * with dropout 0.1: 4 steps, 3 of them replayed, equal 4 eager steps bit for bit (losses, every
 * weight) and leave the generator where the eager steps leave it; the same run with the base
 * write skipped differs (the check catches repeated masks); each replay's masks and uniform
 * samples equal the CPU's for the same counters, in f32, bf16 and f16, sharded dropout included;
 * checkpoint's recomputation inside the captured backward replays its masks; normal samples,
 * CPU random ops, manualSeed and other generator streams are refused with errors naming them.
 * Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/gpt.ts';
import {
  AdamW, type CudaGraph, captureCudaGraph, censusTotals, copyInPlace, crossEntropy, cudaCensus, cudaIsAvailable, type DType, dropout,
  getRngState, manualSeed, memoryStats, native, nn, ones, rand, randn, setRngState, type Tensor, tensor,
} from '../../src/index.ts';
import { graphRngTesting } from '../../src/tensor/graph_rng.ts';
import { tensorBytes } from '../helpers/bits.ts';

const DEV = 'cuda:0';
const STEPS = 4;
const V = 64;
const [B, T] = [2, 16];

const bits = tensorBytes;

function batch(s: number): Tensor[] {
  const ids = Array.from({ length: B * T }, (_, i) => (i * 7 + s * 13 + ((i * s) % 5)) % V);
  return [tensor(ids, { dtype: 'i64' }).reshape([B, T]), tensor(ids.map((v) => (v * 3 + 1) % V), { dtype: 'i64' })];
}

interface Run {
  losses: number[];
  weights: Buffer[];
  rng: { seed: number; offset: number };
  /** rand on the device after training: the generator's sequence continues as eagerly. */
  after: Buffer;
  /** Counters one step consumed: eager, measured around step 1; graphed, the graph's per replay. */
  counters: number;
}

/** GPT tiny bf16 with dropout 0.1 (AdamW); with `graph`, step 0 is the warm-up and steps 1.. replay a graph captured at step 1. */
function train(graph: boolean, checkpoint = false): Run {
  manualSeed(11);
  const model = new GPT(gptConfig('tiny', { dtype: 'bf16', dropout: 0.1, checkpoint }));
  nn.moduleToDevice(model, DEV);
  model.train();
  const opt = new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0.1 });
  const inputs = batch(0).map((t) => t.to(DEV));
  const step = () => {
    const l = crossEntropy(model.forward(inputs[0]).reshape([B * T, V]), inputs[1]);
    l.backward();
    return l;
  };
  const losses: number[] = [];
  let g: CudaGraph<Tensor> | null = null;
  let counters = 0;
  for (let s = 0; s < STEPS; s++) {
    batch(s).forEach((b, i) => copyInPlace(inputs[i], b));
    const at = getRngState().offset;
    if (graph && s === 1) {
      const before = getRngState();
      g = captureCudaGraph(step, { parameters: model.parameters() });
      assert.equal(getRngState(), before, 'the capture consumes no counters (nothing ran)');
    }
    const l = g ? g.replay() : step();
    losses.push(l.item());
    if (!g) l.dispose();
    if (s === 1) counters = getRngState().offset - at;
    opt.step();
    opt.zeroGrad({ setToNone: false });
  }
  const rng = getRngState();
  const r = rand([257], { device: DEV });
  const run = { losses, weights: model.parameters().map(bits), rng, after: bits(r), counters };
  if (g) assert.is(g.randomCounters, counters, 'a replay advances the generator by the counters the capture took');
  r.dispose();
  g?.dispose();
  return run;
}

/** Where two runs differ, or null. */
function difference(eager: Run, graphed: Run): string | null {
  if (graphed.losses.some((l, i) => l !== eager.losses[i])) return `losses ${graphed.losses} vs ${eager.losses}`;
  const w = graphed.weights.findIndex((b, i) => !b.equals(eager.weights[i]));
  if (w >= 0) return `parameter #${w}`;
  if (graphed.rng.seed !== eager.rng.seed || graphed.rng.offset !== eager.rng.offset) return `generator ${JSON.stringify(graphed.rng)} vs ${JSON.stringify(eager.rng)}`;
  if (!graphed.after.equals(eager.after)) return 'rand after training';
  return null;
}

if (!cudaIsAvailable()) {
  test('random ops in CUDA graphs', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_graph_dropout: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  let eager: Run;

  test('bf16 GPT, dropout 0.1: 3 replayed steps equal eager steps bit for bit, and the generator ends where eager leaves it', () => {
    eager = train(false);
    const graphed = train(true);
    assert.is(difference(eager, graphed), null);
    assert.is(graphed.counters, eager.counters, "a replay consumes the eager step's counters");
    // Per step: embedding, attention-probability, attention-output and MLP dropout of every layer.
    assert.ok(eager.counters > B * T * 64, `${eager.counters} counters per step`);
    console.log(`  GPT tiny bf16 dropout 0.1: ${graphed.counters} counters per replay; losses ${eager.losses.map((l) => l.toFixed(4)).join(' ')}`);
  });

  test('the check catches replays that do not set the base: same run with the base write skipped differs', () => {
    graphRngTesting.skipBaseWrite = true;
    let stale: Run;
    try {
      stale = train(true);
    } finally {
      graphRngTesting.skipBaseWrite = false;
    }
    const d = difference(eager, stale);
    assert.ok(d !== null && !d.startsWith('generator'), `without the base write the replays still matched eager (${d})`);
    // And directly: two replays without the write draw the same mask, with it different ones.
    const x = ones([4096], { device: DEV });
    const g = captureCudaGraph(() => dropout(x, 0.5, true));
    const m1 = bits(g.replay());
    const m2 = bits(g.replay());
    graphRngTesting.skipBaseWrite = true;
    const m3 = bits(g.replay());
    graphRngTesting.skipBaseWrite = false;
    assert.not.ok(m1.equals(m2), 'consecutive replays drew the same mask');
    assert.ok(m3.equals(m2), 'without the base write a replay repeats the previous mask');
    g.dispose();
    x.dispose();
  });

  test("each replay's masks and uniform samples equal the CPU's for the same counters (f32, bf16, f16, sharded)", () => {
    manualSeed(3);
    for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
      const xs = [randn([3, 37], { dtype }), randn([5, 11], { dtype })];
      const dx = xs.map((t) => t.to(DEV));
      // Two dropouts (the second a shard of a 200-element tensor), and uniform samples between them.
      const ops = (a: Tensor, b: Tensor, device: 'cpu' | typeof DEV) => [
        dropout(a, 0.3, true),
        rand([129], { dtype, device, low: -2, high: 3 }),
        dropout(b, 0.6, true, { shard: { start: 70, total: 200 } }),
      ];
      setRngState({ seed: 3, offset: 1000 });
      const g = captureCudaGraph(() => ops(dx[0], dx[1], DEV));
      assert.is(g.randomCounters, 111 + 129 + 200, `${dtype}: counters per replay`);
      for (let r = 0; r < 3; r++) {
        const s = getRngState();
        const got = g.replay().map(bits);
        assert.equal(getRngState(), { seed: 3, offset: s.offset + g.randomCounters }, `${dtype}: replay ${r} advances the generator`);
        setRngState(s);
        const want = ops(xs[0], xs[1], 'cpu');
        want.forEach((t, i) => assert.ok(bits(t).equals(got[i]), `${dtype}: replay ${r}, output ${i} differs from the CPU's`));
        for (const t of want) t.dispose();
      }
      const census = censusTotals(cudaCensus(() => g.replay()).entries);
      assert.equal([census.graph, census.deviceOps], [1, 2], `${dtype}: a replay is the base write and the graph launch`);
      g.dispose();
    }
    assert.ok((memoryStats()[DEV]?.other.current ?? 0) >= 16, "the device's generator base is tagged 'other'");
  });

  test("activation checkpointing: the captured backward's recomputation replays the forward's masks", () => {
    const e = train(false, true);
    const graphed = train(true, true);
    assert.is(difference(e, graphed), null);
  });

  test('refused in a capture, naming it, the generator left where it was: normal samples, CPU random ops, manualSeed, other streams', () => {
    const x = ones([8], { device: DEV });
    const cpu = ones([8]);
    setRngState({ seed: 5, offset: 100 });
    const before = getRngState();
    const refuse = (fn: () => unknown, re: RegExp) => {
      assert.throws(() => captureCudaGraph(fn), re);
      assert.equal(getRngState(), before, 'a failed capture leaves the generator where it was');
    };
    refuse(() => randn([4], { device: DEV }), /randn on a CUDA device inside captureCudaGraph \(capturing cuda:0\): normal samples are drawn on the CPU/);
    refuse(() => dropout(cpu, 0.5, true), /random op \(dropout, rand, randn\) inside captureCudaGraph/);
    refuse(() => rand([4]), /random op \(dropout, rand, randn\) inside captureCudaGraph/);
    refuse(() => manualSeed(1), /manualSeed inside captureCudaGraph/);
    refuse(() => {
      dropout(x, 0.5, true);
      setRngState({ seed: before.seed + 1, offset: 0 });
      return dropout(x, 0.5, true);
    }, /under generator state \{seed \d+, offset 0\}, not the capture's sequence/);
    refuse(() => {
      const y = dropout(x, 0.5, true);
      setRngState({ seed: before.seed, offset: 0 });
      return y;
    }, /the generator ended the capture at .*outside the capture's sequence/);
    setRngState(before);
    x.dispose();
  });
}

test.run();
