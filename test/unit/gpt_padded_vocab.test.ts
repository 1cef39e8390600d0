/**
 * GPT's vocabulary padded inside the model (makeVocabSizeDivisibleBy, models/gpt_vocab.ts):
 * against the unpadded model from the same seed, over AdamW steps (weight decay on), the losses,
 * the gradients of wte's real rows and of every other parameter, and the weights are equal (CPU
 * f32 and the emulated device's bf16: bit for bit; on a GPU cuBLASLt may pick other kernels for
 * N = Vp: within TOL, see DRIFT), the padding rows of wte and of its gradient stay exactly 0, and
 * the logits are [B, T, V] (a view at row pitch Vp). On CUDA narrow's backward hands the
 * cross-entropy's pitched gradient on whole (ops/narrow_grad.ts): counted, and the only copies
 * added are the padding columns' fill; captured as a CUDA graph the step gives eager's losses.
 * Also: parameter counts, the option's checks, lookups limited to rows < V, state dicts and
 * engine checkpoints padded otherwise refused naming the key, both shapes and the option, ZeRO
 * 0-3 through the engine, a 2-stage pipeline of the layer list, the tensor-parallel list's refusal.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptBenchStep } from '../../bench/gpu_gpt.ts';
import { GPT, type GPTConfig, gptConfig, gptParamCount, gptPipelineLayers, gptTensorParallelPipelineLayers, paddedVocabSize } from '../../models/index.ts';
import {
  AdamW, crossEntropy, cudaCensus, type DType, destroyDistributed, initDistributed, initialize, manualSeed, narrowGradsInPlace, native, nn, noGrad,
  PipelineEngine, PipelineModule, type ProcessGroup, type Tensor, tensor, tidy,
} from '../../src/index.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { assertSameBits } from '../helpers/bits.ts';
import { maxRelErr, TOL } from '../helpers/cuda_parity.ts';
import { nameOn, testDevices } from '../helpers/devices.ts';
import { gptEngineRun } from '../helpers/gpt_engine_run.ts';

const [B, T, V, M] = [2, 16, 67, 32];
const VP = 96;
/** A GPU's cuBLASLt may choose another kernel for N = Vp than for N = V; the CPU and the emulated device compute the same sums. */
const EXACT = 'cudaEmuChecks' in native;

const LR = 1e-2;
/**
 * On a GPU, after a step the two runs' weights may differ by an update's rounding: AdamW moves a
 * weight by at most ~2 lr a step, so weights are held to 2·3·lr absolute and later steps' gradients
 * to 10x TOL (relative to the largest); the first step's to TOL.
 */
const DRIFT = { weight: 2 * 3 * LR, grad: 10 };

function assertClose(what: string, got: Tensor, want: Tensor, dev: Device, gpuTol: { abs?: number; times?: number } = {}): void {
  if (dev === 'cpu' || EXACT) {
    assertSameBits(what, got, want);
    return;
  }
  const g = got.to('cpu').contiguous().toList() as number[];
  const w = want.to('cpu').contiguous().toList() as number[];
  if (gpuTol.abs !== undefined) {
    const err = Math.max(...g.map((x, i) => Math.abs(x - w[i])));
    assert.ok(err <= gpuTol.abs, `${what}: max difference ${err} > ${gpuTol.abs}`);
    return;
  }
  const tol = TOL[want.dtype] * (gpuTol.times ?? 1);
  const err = maxRelErr(g, w);
  assert.ok(err <= tol, `${what}: max relative error ${err} > ${tol}`);
}

const ids = (s: number, dev: Device) => tensor(Array.from({ length: B * T }, (_, i) => (i * 31 + s * 7) % V), { dtype: 'i32', shape: [B, T], device: dev });
const targets = (s: number, dev: Device) => tensor(Array.from({ length: B * T }, (_, i) => (i * 17 + s * 3 + 1) % V), { dtype: 'i64', device: dev });

function model(dev: Device, dtype: DType, multiple: number): GPT {
  manualSeed(11);
  return nn.moduleToDevice(new GPT(gptConfig('tiny', { vocabSize: V, nCtx: T, dropout: 0, dtype, makeVocabSizeDivisibleBy: multiple })), dev);
}

/** wte.weight's first V rows, and its padding rows (empty when unpadded). */
function split(w: Tensor): [Tensor, Tensor] {
  const C = w.shape[1];
  return [w.alias([V, C], [C, 1], w.offset), w.alias([w.shape[0] - V, C], [C, 1], w.offset + V * C)];
}

test('paddedVocabSize and gptParamCount: Vp rows counted, as allocated; bad options refused naming the option', () => {
  assert.is(paddedVocabSize(50257, 128), 50304);
  assert.is(paddedVocabSize(50257, 64), 50304);
  assert.is(paddedVocabSize(50257), 50257);
  assert.is(paddedVocabSize(64, 32), 64);
  assert.is(gptParamCount(gptConfig('124M')), 124439808);
  assert.is(gptParamCount(gptConfig('124M', { makeVocabSizeDivisibleBy: 128 })), 124439808 + 47 * 768);
  const m = model('cpu', 'f32', M);
  assert.is(m.wte.weight.shape.join(), `${VP},32`);
  assert.is(m.parameters().reduce((n, p) => n + p.numel, 0), gptParamCount(m.config));
  assert.match(String(m.wte), /67 \(padded to 96\), 32/);
  for (const bad of [0, -8, 2.5, Number.NaN]) {
    assert.throws(() => new GPT(gptConfig('tiny', { makeVocabSizeDivisibleBy: bad })), /makeVocabSizeDivisibleBy must be a positive integer/);
  }
});

for (const dev of testDevices('test/unit/gpt_padded_vocab')) {
  const dtype: DType = dev === 'cpu' ? 'f32' : 'bf16';
  test(nameOn(`GPT tiny ${dtype}, vocab ${V} padded to ${VP}: 3 AdamW steps equal the unpadded model's (losses, gradients, weights); padding rows stay 0`, dev), () => {
    const runs = [1, M].map((multiple) => {
      const m = model(dev, dtype, multiple);
      const opt = new AdamW(m.parameters(), { lr: LR, weightDecay: 0.1 });
      const steps: { loss: Tensor; grads: Tensor[]; shape: number[]; strides: number[]; inPlace: number }[] = [];
      for (let s = 0; s < 3; s++) {
        const before = narrowGradsInPlace();
        const logits = m.forward(ids(s, dev));
        // The class count is the logits' own: were the padding columns in them, they would be in the softmax.
        const loss = crossEntropy(logits.reshape([-1, logits.shape[2]]), targets(s, dev));
        loss.backward();
        const grads = noGrad(() => m.parameters().map((p) => (p.grad as Tensor).clone()));
        steps.push({ loss: loss.detach(), grads, shape: [...logits.shape], strides: [...logits.strides], inPlace: narrowGradsInPlace() - before });
        opt.step();
        opt.zeroGrad();
        logits.dispose();
      }
      return { m, steps };
    });
    const [plain, padded] = runs;
    for (let s = 0; s < 3; s++) {
      const a = plain.steps[s];
      const b = padded.steps[s];
      const drift = { times: s === 0 ? 1 : DRIFT.grad };
      assertClose(`step ${s} loss`, b.loss, a.loss, dev);
      assert.equal(b.shape, [B, T, V], 'logits [B, T, V]');
      assert.equal(b.strides, [T * VP, VP, 1], 'a view of the [.., Vp] product');
      // CUDA's cross-entropy writes its gradient at the pitch Vp, which the narrow hands on; the CPU's is dense.
      assert.is(b.inPlace, dev === 'cpu' ? 0 : 1, `step ${s}: narrow gradients completed in place`);
      const [real, pad] = split(b.grads[0]);
      assertClose(`step ${s} wte.weight.grad rows < V`, real, a.grads[0], dev, drift);
      assert.ok(pad.toList().every((x) => Object.is(x, 0)), `step ${s}: wte's padding rows have a zero gradient`);
      for (let i = 1; i < a.grads.length; i++) assertClose(`step ${s} gradient ${i}`, b.grads[i], a.grads[i], dev, drift);
    }
    const [real, pad] = split(padded.m.wte.weight);
    assertClose('wte.weight rows < V after 3 steps', real, plain.m.wte.weight, dev, { abs: DRIFT.weight });
    assert.ok(pad.toList().every((x) => Object.is(x, 0)), 'wte padding rows are 0 after 3 AdamW steps with weight decay');
    const pp = padded.m.parameters();
    plain.m.parameters().forEach((p, i) => i > 0 && assertClose(`parameter ${i} after 3 steps`, pp[i], p, dev, { abs: DRIFT.weight }));
    for (const r of runs) r.m.dispose();
  });

  test(nameOn('lookups see rows < V only: an id or a target of V is out of range', dev), () => {
    const m = model(dev, dtype, M);
    const bad = tensor([[0, V]], { dtype: 'i32', device: dev });
    const check = (fn: () => unknown) => fn;
    assert.throws(check(() => m.forward(bad).sum().item()), new RegExp(`id ${V} at position \\[0, 1\\].*out of range for V = ${V} rows \\(weight \\[${VP}, 32\\]`));
    const logits = m.forward(tensor([[0, 1]], { dtype: 'i32', device: dev }));
    assert.throws(() => crossEntropy(logits.reshape([2, V]), tensor([0, V], { dtype: 'i64', device: dev })).item(), new RegExp(`target ${V} .*out of range for C = ${V} classes`));
    m.dispose();
  });
}

if (testDevices('test/unit/gpt_padded_vocab').includes('cuda:0')) {
  test('census [cuda:0]: the padded backward copies only the padding columns, not the logits gradient', () => {
    const census = (multiple: number) => {
      const m = model('cuda:0', 'bf16', multiple);
      const x = ids(0, 'cuda:0');
      const y = targets(0, 'cuda:0');
      const step = () => tidy(() => crossEntropy(m.forward(x).view([B * T, V]), y).backward());
      step();
      m.zeroGrad();
      const before = narrowGradsInPlace();
      const { entries } = cudaCensus(step);
      const inPlace = narrowGradsInPlace() - before;
      m.dispose();
      const copies = entries.filter((e) => e.site.startsWith('cuda/copy.cu'));
      return { inPlace, copyBytes: copies.reduce((n, e) => n + e.bytes, 0), copies: copies.reduce((n, e) => n + e.count, 0) };
    };
    const plain = census(1);
    const padded = census(M);
    // One strided copy from a zero (the padding columns, B*T*(Vp-V) bf16 read and written) and the 1-element zero's fill.
    assert.is(padded.copyBytes - plain.copyBytes, B * T * (VP - V) * 2 * 2 + 2, JSON.stringify({ plain, padded }));
    assert.is(padded.copies - plain.copies, 2, JSON.stringify({ plain, padded }));
    assert.is(padded.inPlace, 1);
  });
}

if (testDevices('test/unit/gpt_padded_vocab').includes('cuda:0')) {
  test('captured as one CUDA graph [cuda:0] (bench/gpu.ts (b)\'s step, the vocabulary padded inside): the losses of 4 steps equal eager', () => {
    const losses = [false, true].map((graph) => {
      const g = gptBenchStep(4, 16, 'tiny', { padVocabInside: 128, graph });
      const out = [0, 1, 2, 3].map((k) => g.step(k, true));
      g.dispose();
      return out;
    });
    const tol = EXACT ? 0 : TOL.bf16;
    assert.ok(maxRelErr(losses[1], losses[0]) <= tol, `graph ${losses[1]} vs eager ${losses[0]}`);
  });
}

test('state dicts: a padded table loads into a padded model; padded otherwise is refused naming the key, both shapes and the option', () => {
  const padded = model('cpu', 'f32', M);
  const plain = model('cpu', 'f32', 1);
  assert.throws(
    () => padded.loadStateDict(plain.stateDict()),
    /"wte\.weight": checkpoint \[67, 32\], model \[96, 32\] \(the model's vocabulary of 67 is padded to 96 rows \(makeVocabSizeDivisibleBy: 32\); build the model with makeVocabSizeDivisibleBy: 1 \(67 → 67 rows\) to load it\)/,
  );
  assert.throws(
    () => plain.loadStateDict(padded.stateDict()),
    /"wte\.weight": checkpoint \[96, 32\], model \[67, 32\] \(the model's vocabulary of 67 is not padded \(makeVocabSizeDivisibleBy: 1\); build the model with makeVocabSizeDivisibleBy: 32 \(67 → 96 rows\) to load it\)/,
  );
  const other = new GPT(gptConfig('tiny', { vocabSize: V, nCtx: T, makeVocabSizeDivisibleBy: M }));
  other.loadStateDict(padded.stateDict());
  assert.equal(other.wte.weight.toList(), padded.wte.weight.toList());
  for (const m of [padded, plain, other]) m.dispose();
});

test('engine checkpoints (ZeRO 0 and 1) of a padded model refused by an unpadded one, and the reverse, naming the tensor, both shapes and the option', async () => {
  await initDistributed({ timeoutMs: 30_000 });
  const dir = mkdtempSync(path.join(tmpdir(), 'mt-padded-vocab-'));
  try {
    for (const stage of [0, 1]) {
      const config = { train_batch_size: 2, train_micro_batch_size_per_gpu: 2, optimizer: { type: 'AdamW', params: { lr: 1e-2 } }, zero_optimization: { stage } };
      const engines = [];
      for (const multiple of [M, 1]) {
        const m = model('cpu', 'f32', multiple);
        const { engine } = await initialize({ model: m, config, device: 'cpu', log: () => {} });
        tidy(() => {
          engine.backward(crossEntropy(engine.forward(ids(0, 'cpu')).reshape([B * T, V]), targets(0, 'cpu')));
          engine.step();
        });
        engines.push(engine);
      }
      const [padded, plain] = engines;
      await padded.saveCheckpoint(path.join(dir, `padded${stage}`));
      await plain.saveCheckpoint(path.join(dir, `plain${stage}`));
      assert.throws(
        () => plain.loadCheckpoint(path.join(dir, `padded${stage}`)),
        /tensor "(optimizer\.)?wte\.weight[.\w]*" is \[96, 32\] in .*, requested \[67, 32\]: the model's vocabulary of 67 is not padded \(makeVocabSizeDivisibleBy: 1\); build the model with makeVocabSizeDivisibleBy: 32/,
      );
      assert.throws(() => padded.loadCheckpoint(path.join(dir, `plain${stage}`)), /is \[67, 32\] in .*, requested \[96, 32\]: the model's vocabulary of 67 is padded to 96 rows \(makeVocabSizeDivisibleBy: 32\)/);
      padded.loadCheckpoint(path.join(dir, `padded${stage}`));
      for (const e of engines) {
        e.destroy();
        e.module.dispose();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await destroyDistributed();
  }
});

test('through the engine at ZeRO stages 0-3 (tied head an external parameter at 3): padded losses and weights equal the unpadded run', async () => {
  await initDistributed({ timeoutMs: 30_000 });
  try {
    for (const stage of [0, 1, 2, 3]) {
      const config = {
        train_batch_size: 2, train_micro_batch_size_per_gpu: 2, gradient_clipping: 1,
        optimizer: { type: 'AdamW', params: { lr: 1e-2, weight_decay: 0.1 } },
        zero_optimization: { stage, reduce_bucket_size: 20_000 },
      };
      const run = (gpt: Partial<GPTConfig>) => gptEngineRun({ seed: 5, config, micros: 3, counter: () => 0, gpt: { vocabSize: V, ...gpt } });
      const plain = await run({});
      const padded = await run({ makeVocabSizeDivisibleBy: M });
      assert.equal(padded.losses, plain.losses, `stage ${stage}: losses`);
      const wte = padded.weights[0];
      assert.equal(wte.slice(0, V * 32), plain.weights[0], `stage ${stage}: wte rows < V`);
      assert.ok(wte.slice(V * 32).every((x) => Object.is(x, 0)), `stage ${stage}: wte padding rows stay 0`);
      assert.equal(padded.weights.slice(1), plain.weights.slice(1), `stage ${stage}: other weights`);
    }
  } finally {
    await destroyDistributed();
  }
});

test('pipeline layer list (2 stages on one rank, 3 batches of 2 micro-batches, AdamW): padded losses and weights equal the unpadded run, padding rows 0; the tensor-parallel list refuses the option', async () => {
  const run = async (multiple: number) => {
    manualSeed(11);
    const cfg = gptConfig('tiny', { vocabSize: V, nCtx: T, dropout: 0, makeVocabSizeDivisibleBy: multiple });
    const lossFn = (logits: Tensor, y: Tensor) => crossEntropy(logits.reshape([-1, logits.shape[2]]), y.reshape([-1]));
    const pipe = new PipelineModule({ layers: gptPipelineLayers(cfg).layers, numStages: 2, partitionMethod: 'uniform', lossFn });
    const engine = await PipelineEngine.create({ module: pipe, microBatches: 2, device: 'cpu', optimizer: new AdamW(pipe.parameters(), { lr: LR, weightDecay: 0.1 }) });
    const losses = [0, 1, 2].map((s) => engine.trainBatch([0, 1].map((j) => [ids(2 * s + j, 'cpu'), targets(2 * s + j, 'cpu').reshape([B, T])] as [Tensor, Tensor])));
    const weights = pipe.parameters().map((p) => p.toList());
    const shapes = pipe.parameters().map((p) => p.shape.join());
    engine.destroy();
    return { losses, weights, shapes };
  };
  const plain = await run(1);
  const padded = await run(M);
  assert.equal(padded.losses, plain.losses, 'losses');
  const wte = padded.shapes.indexOf(`${VP},32`);
  assert.ok(wte >= 0, `a [${VP}, 32] table among ${padded.shapes}`);
  padded.weights.forEach((w, i) => {
    if (i !== wte) assert.equal(w, plain.weights[i], `parameter ${i}`);
  });
  assert.equal(padded.weights[wte].slice(0, V * 32), plain.weights[wte], 'wte rows < V');
  assert.ok(padded.weights[wte].slice(V * 32).every((x) => Object.is(x, 0)), 'wte padding rows stay 0');
  const cfg = gptConfig('tiny', { vocabSize: V, nCtx: T, makeVocabSizeDivisibleBy: M });
  const tp = { size: 2, rank: 0 } as unknown as ProcessGroup;
  assert.throws(() => gptTensorParallelPipelineLayers(cfg, tp), /gptTensorParallelPipelineLayers: makeVocabSizeDivisibleBy 32 is not supported/);
});

test.run();
