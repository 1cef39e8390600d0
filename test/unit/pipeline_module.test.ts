/**
 * PipelineModule and PipelineEngine in one process (every stage on this rank): GPT's layer list
 * reproduces the plain GPT (same initial values bit for bit, same logits); trainBatch with
 * several stages on one rank (stage outputs and input gradients handed over in memory, no
 * communication) equals plain training; the options and partitions are checked with clear errors.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptPipelineLayers } from '../../models/gpt_pipeline.ts';
import { GPT, gptConfig } from '../../models/index.ts';
import {
  AdamW, crossEntropy, getRngState, LayerSpec, type MicroBatch, manualSeed, memoryStats, nn, PipelineEngine, PipelineModule, type RngState,
  type ScheduleName, type Tensor, tensor, tidy,
} from '../../src/index.ts';
import { rejects } from './rejects.ts';

const cfg = gptConfig('tiny');
const lossFn = (logits: Tensor, y: Tensor) => crossEntropy(logits.reshape([-1, cfg.vocabSize]), y.reshape([-1]));

function build(numStages: number, method = 'uniform', interval = 0): { pipe: PipelineModule; key: (i: number, n: string) => string } {
  manualSeed(0);
  const { layers, key } = gptPipelineLayers(cfg);
  return { pipe: new PipelineModule({ layers, numStages, partitionMethod: method, lossFn, activationCheckpointInterval: interval }), key };
}

function plain(): GPT {
  manualSeed(0);
  return new GPT(cfg);
}

const ids = (seed: number) => tensor(Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 7 + seed * 13) % cfg.vocabSize), { dtype: 'i32', shape: [2, 16] });

test('gptPipelineLayers: same parameters (by GPT key) bit for bit and the same logits as GPT', () => {
  const { pipe, key } = build(3);
  const ref = plain();
  const sd = ref.stateDict();
  const names = new Set<string>();
  for (const [name, p] of pipe.namedParameters()) {
    const dot = name.indexOf('.');
    const k = key(Number(name.slice(0, dot)), name.slice(dot + 1));
    names.add(k);
    assert.equal(Array.from(p.toArray() as Float32Array), Array.from(sd[k].toArray() as Float32Array), k);
  }
  assert.equal([...names].sort(), Object.keys(sd).sort(), 'every GPT parameter, the tied one once');
  const x = ids(1);
  tidy(() => assert.equal(Array.from(pipe.forward(x).toArray() as Float32Array), Array.from(ref.forward(x).toArray() as Float32Array)));
  assert.match(pipe.describe(), /stage 2: layers 4\.\.5/);
  assert.match(pipe.describe(), /tied 'wte': pipeline ranks 0/);
});

test('PipelineEngine on one rank with 3 stages (interleaved, in-memory handoff) and recomputation equals plain training', async () => {
  const { pipe } = build(3, 'uniform', 1);
  const engine = await PipelineEngine.create({ module: pipe, microBatches: 2, optimizer: new AdamW(pipe.parameters(), { lr: 1e-2 }) });
  assert.is(engine.schedule.name, 'interleaved');
  const ref = plain();
  const opt = new AdamW(ref.parameters(), { lr: 1e-2 });
  for (let step = 0; step < 3; step++) {
    const mbs: MicroBatch[] = [0, 1].map((j) => [ids(step * 2 + j), ids(step * 2 + j + 100)]);
    const got = engine.trainBatch(mbs);
    let want = 0;
    for (const [x, y] of mbs) want += tidy(() => {
      const l = lossFn(ref.forward(x), y);
      l.div(2).backward();
      return l.item() / 2;
    });
    opt.step();
    opt.zeroGrad();
    assert.ok(Math.abs(got - want) <= 1e-6 * want, `step ${step}: ${got} vs ${want}`);
  }
  const sd = ref.stateDict();
  const w = pipe.layerModule(2)?.getParameter('attn.c_attn.weight') as Tensor;
  const e = sd['h.0.attn.c_attn.weight'].toArray() as Float32Array;
  const a = w.toArray() as Float32Array;
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - e[i]));
  assert.ok(d <= 1e-6, `weights after 3 steps within 1e-6 (got ${d})`);
});

test('PipelineModule: errors name the option, the stages and the layers', () => {
  const { layers } = gptPipelineLayers(cfg);
  assert.throws(() => new PipelineModule({ layers, numStages: 7, partitionMethod: 'uniform' }), /7 stages but only 6 layers/);
  assert.throws(() => new PipelineModule({ layers, numStages: 2, partitionMethod: 'nope' }), /unknown method 'nope'/);
  assert.throws(() => new PipelineModule({ layers, numStages: 2, stages: 3 } as never), /unknown option "stages"/);
  assert.throws(() => new PipelineModule({ layers: [...layers, 42 as never], numStages: 2 }), /layers\[6\] must be a Module, a LayerSpec/);
  assert.throws(() => new PipelineModule({ layers, numStages: 2, activationCheckpointInterval: -1 }), /activationCheckpointInterval/);
  assert.throws(() => new LayerSpec(nn.Linear, [4, 4], { rngDraws: -1 }), /rngDraws must be a non-negative integer/);
  const { pipe } = build(2);
  assert.throws(() => pipe.forwardStage(5, ids(0)), /stage 5 is not held by pipeline rank 0 \(it holds 0, 1\)/);
});

test('PipelineModule: parameters partitioning counts a LayerSpec without keeping it; type:<regex> balances blocks', () => {
  const big = gptConfig('tiny', { nLayer: 4 });
  manualSeed(0);
  const byParams = new PipelineModule({ layers: gptPipelineLayers(big).layers, numStages: 2, partitionMethod: 'parameters' });
  assert.is(byParams.partition.method, 'parameters');
  assert.is(byParams.partition.stageCosts.reduce((a, b) => a + b, 0), byParams.numParameters() + big.vocabSize * big.nEmbd);
  manualSeed(0);
  const byType = new PipelineModule({ layers: gptPipelineLayers(big).layers, numStages: 2, partitionMethod: 'type:TransformerBlock' });
  assert.equal(byType.partition.stageCosts, [2, 2]);
});

test('PipelineEngine: clear errors for options, schedules and data', async () => {
  const { pipe } = build(2);
  const opt = { step() {}, zeroGrad() {} };
  await rejects(PipelineEngine.create({ module: pipe, microBatches: 0, optimizer: opt }), /microBatches must be a positive integer, got 0/);
  await rejects(PipelineEngine.create({ module: pipe, microBatches: 2 } as never), /exactly one of optimizer and zero/);
  await rejects(PipelineEngine.create({ module: pipe, microBatches: 2, optimizer: opt, schedule: 'gpipe' }), /schedule 'gpipe' runs one stage per rank, but the module has 2 stages per rank; use 'interleaved'/);
  await rejects(PipelineEngine.create({ module: pipe, microBatches: 2, optimizer: opt, schedule: 'fast' as never }), /unknown schedule 'fast'/);
  await rejects(PipelineEngine.create({ module: pipe, microBatches: 2, optimizer: opt, lr: 1 } as never), /unknown option "lr"/);
  const engine = await PipelineEngine.create({ module: pipe, microBatches: 3, optimizer: opt });
  assert.throws(() => engine.evalBatch(null), /needs a data iterator/);
  assert.throws(() => engine.evalBatch([[ids(0)] as never, [ids(0)] as never, [ids(0)] as never]), /each micro-batch must be \[input, target\]/);
  const again = await PipelineEngine.create({ module: pipe, microBatches: 3, optimizer: opt });
  assert.throws(() => again.trainBatch([[ids(0), ids(1)]]), /data iterator ended after 1 of 3 micro-batches/);
});

test('PipelineEngine: a batch that fails part-way frees what it held and the engine refuses further batches, naming the failure', async () => {
  const { pipe } = build(2, 'uniform', 1);
  const opt = { step() {}, zeroGrad() {} };
  const engine = await PipelineEngine.create({ module: pipe, microBatches: 3, optimizer: opt });
  const act = () => memoryStats().cpu?.activation?.current ?? 0;
  const mbs: MicroBatch[] = [0, 1, 2].map((j) => [ids(j), ids(j + 100)]);
  const before = act();
  // The first two micro-batches run forward (1F1B holds them), then the third is missing.
  assert.throws(() => engine.trainBatch(mbs.slice(0, 2)), /data iterator ended after 2 of 3 micro-batches/);
  assert.is(act(), before, 'no activation bytes left behind');
  assert.throws(() => engine.trainBatch(mbs), /trainBatch: an earlier batch failed part-way \(PipelineEngine: the data iterator ended after 2 of 3 micro-batches\).*create a new PipelineEngine/);
  assert.throws(() => engine.evalBatch(mbs), /evalBatch: an earlier batch failed part-way/);
  for (const p of pipe.parameters()) {
    p.grad?.dispose();
    p.grad = null;
  }
  const fresh = await PipelineEngine.create({ module: pipe, microBatches: 3, optimizer: opt });
  assert.ok(Number.isFinite(fresh.trainBatch(mbs)), 'a new engine over the same module trains');
});

/** One-rank engine over GPT-tiny with dropout 0.1: per-step losses and the final parameters by GPT key. */
async function trainDropout(numStages: number, method: string, interval: number, schedule?: ScheduleName): Promise<{ losses: number[]; params: Map<string, number[]>; seed: RngState }> {
  const dcfg = { ...cfg, dropout: 0.1 };
  manualSeed(0);
  const { layers, key } = gptPipelineLayers(dcfg);
  const pipe = new PipelineModule({ layers, numStages, partitionMethod: method, lossFn, activationCheckpointInterval: interval });
  const engine = await PipelineEngine.create({ module: pipe, microBatches: 2, schedule, optimizer: new AdamW(pipe.parameters(), { lr: 1e-2 }) });
  const losses: number[] = [];
  for (let step = 0; step < 2; step++) losses.push(engine.trainBatch([0, 1].map((j) => [ids(step * 2 + j), ids(step * 2 + j + 100)])));
  const params = new Map<string, number[]>();
  for (const [name, p] of pipe.namedParameters()) {
    const dot = name.indexOf('.');
    params.set(key(Number(name.slice(0, dot)), name.slice(dot + 1)), Array.from(p.toArray() as Float32Array));
  }
  return { losses, params, seed: getRngState() };
}

test('pipeline dropout: masks are the same on any partition, schedule and recomputation (bit for bit) and leave the global generator alone', async () => {
  const one = await trainDropout(1, 'uniform', 0);
  const cases: [number, string, number, ScheduleName | undefined][] = [[3, 'uniform', 1, undefined], [2, 'parameters', 0, undefined], [4, 'type:TransformerBlock', 2, undefined]];
  for (const [stages, method, interval, schedule] of cases) {
    const got = await trainDropout(stages, method, interval, schedule);
    const what = `${stages} stages, ${method}, interval ${interval}`;
    assert.equal(got.losses, one.losses, `${what}: losses`);
    for (const [k, v] of one.params) assert.equal(got.params.get(k), v, `${what}: ${k}`);
    assert.equal(got.seed, one.seed, `${what}: global generator`);
  }
  // Dropout is on: the same run without it gives other losses, and the two steps' masks differ.
  manualSeed(0);
  const { layers } = gptPipelineLayers(cfg);
  const pipe = new PipelineModule({ layers, numStages: 1, partitionMethod: 'uniform', lossFn });
  const engine = await PipelineEngine.create({ module: pipe, microBatches: 2, optimizer: new AdamW(pipe.parameters(), { lr: 1e-2 }) });
  const plainLoss = engine.trainBatch([0, 1].map((j) => [ids(j), ids(j + 100)]));
  assert.ok(Math.abs(plainLoss - one.losses[0]) > 1e-4, `dropout changes the loss: ${plainLoss} vs ${one.losses[0]}`);
  assert.equal(one.seed, { seed: 0, offset: getRngState().offset }, 'the global generator did not advance in trainBatch');
});
test.run();
