/**
 * The last stage's losses summed on its device (src/pipeline/loss_sum.ts) instead of read once per
 * micro-batch: on the CPU and cuda:0,
 * - LossSum's f64 sum of f32/bf16/f16 losses has the bits of JS's `sum += loss.item()` in the same
 *   order (values with cancellation, signed zeros, subnormals, infinities and NaN);
 * - trainBatch and evalBatch of a 2-stage GPT-tiny pipeline held by one rank (f32 and bf16) return
 *   exactly (JS sum of the micro-batches' item()) / m, read by the loss function itself as the
 *   engine used to;
 * - a trainBatch reads the device once (the sum; on a GPU with the embedding's deferred index
 *   checks) whatever the number of micro-batches (f32, no clipping, no scaler: nothing else to read).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptPipelineLayers } from '../../models/gpt_pipeline.ts';
import { gptConfig } from '../../models/index.ts';
import { AdamW, crossEntropy, type Device, manualSeed, native, PipelineEngine, PipelineModule, type Tensor, tensor } from '../../src/index.ts';
import { moduleToDevice } from '../../src/nn/to_device.ts';
import { LossSum } from '../../src/pipeline/loss_sum.ts';
import { mulberry32 } from '../dist/fixtures/batches.ts';
import { deviceTest, nameOn, testDevices } from '../helpers/devices.ts';

deviceTest('LossSum: the f64 sum on the device has the bits of the JS sum of the same losses in the same order', (dev) => {
  const rnd = mulberry32(7);
  const special = [0, -0, 1e-45, -1e-45, 3.4e38, -3.4e38, 1, -1, 2 ** 24, 1e8, -1e8, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN];
  const runs: number[][] = [[], [-0], [-0, -0], [1e8, 1, -1e8, 1e-8], [3.4e38, 3.4e38, -3.4e38], [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]];
  for (let r = 0; r < 40; r++) {
    runs.push(Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => (rnd() < 0.1 ? special[Math.floor(rnd() * special.length)] : (rnd() - 0.5) * 2 ** Math.floor(rnd() * 60 - 30))));
  }
  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    for (const values of runs) {
      const sum = new LossSum();
      let js = 0;
      for (const v of values) {
        const loss = tensor([v], { dtype, device: dev }).reshape([]);
        js += loss.item();
        sum.add(loss);
        loss.dispose();
      }
      const got = sum.take();
      assert.ok(Object.is(got, js), `${dtype} ${values}: device sum ${got}, JS sum ${js}`);
    }
  }
});

const cfg = gptConfig('tiny', { dropout: 0 });
const [ROWS, T] = [2, 16];

/** A 2-stage pipeline on one rank; `seen` gets each loss the last stage computes (read by the test, as the engine used to). */
async function pipeline(dev: Device, dtype: 'f32' | 'bf16', m: number, seen: number[] | null): Promise<PipelineEngine> {
  manualSeed(0);
  const c = { ...cfg, dtype };
  const lossFn = (logits: Tensor, y: Tensor) => {
    const l = crossEntropy(logits.reshape([-1, c.vocabSize]), y.reshape([-1]));
    seen?.push(l.item());
    return l;
  };
  const pipe = new PipelineModule({ layers: gptPipelineLayers(c).layers, numStages: 2, partitionMethod: 'uniform', lossFn });
  if (dev !== 'cpu') moduleToDevice(pipe, dev);
  return PipelineEngine.create({ module: pipe, microBatches: m, device: dev, optimizer: new AdamW(pipe.parameters(), { lr: 1e-2 }) });
}

function batches(dev: Device, m: number, seed: number): [Tensor, Tensor][] {
  const rnd = mulberry32(seed);
  const draw = () => tensor(Int32Array.from({ length: ROWS * T }, () => Math.floor(rnd() * cfg.vocabSize)), { dtype: 'i32', shape: [ROWS, T], device: dev });
  return Array.from({ length: m }, () => [draw(), draw()] as [Tensor, Tensor]);
}

/** deviceTest for an async body (the engine is made asynchronously). */
function engineTest(name: string, body: (dev: Device) => Promise<void>): void {
  for (const dev of testDevices('test/unit/pipeline_loss_sum')) test(nameOn(name, dev), () => body(dev));
}

function free(bs: [Tensor, Tensor][]): void {
  for (const [x, y] of bs) {
    x.dispose();
    y.dispose();
  }
}

engineTest('trainBatch and evalBatch return the JS sum of the micro-batch losses / m, bit for bit (f32, bf16)', async (dev) => {
  for (const dtype of ['f32', 'bf16'] as const) {
    const m = 3;
    const seen: number[] = [];
    const engine = await pipeline(dev, dtype, m, seen);
    for (let step = 0; step < 3; step++) {
      const bs = batches(dev, m, step);
      seen.length = 0;
      const train = engine.trainBatch(bs);
      const trainWant = seen.reduce((s, v) => s + v, 0) / m;
      seen.length = 0;
      const ev = engine.evalBatch(bs);
      const evalWant = seen.reduce((s, v) => s + v, 0) / m;
      free(bs);
      assert.ok(Object.is(train, trainWant), `${dtype} step ${step}: trainBatch ${train}, JS ${trainWant}`);
      assert.ok(Object.is(ev, evalWant), `${dtype} step ${step}: evalBatch ${ev}, JS ${evalWant}`);
    }
  }
});

engineTest('a trainBatch reads the device once, for the loss, whatever the number of micro-batches', async (dev) => {
  const counts: number[] = [];
  for (const m of [1, 4]) {
    const engine = await pipeline(dev, 'f32', m, null);
    const read = native.read;
    let n = 0;
    native.read = (...a: Parameters<typeof read>) => {
      n++;
      return read(...a);
    };
    const bs = batches(dev, m, 1);
    try {
      engine.trainBatch(bs);
    } finally {
      native.read = read;
      free(bs);
    }
    counts.push(n);
  }
  // On a GPU the embedding's deferred index checks are read at that read too, all flags at once (device_checks.ts).
  const once = dev === 'cpu' ? 1 : 2;
  assert.equal(counts, [once, once], `reads in trainBatch with 1 and 4 micro-batches: ${counts}`);
});

test.run();
