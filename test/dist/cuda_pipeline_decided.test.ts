// The plain (non-ZeRO) pipeline step decided on cuda:0 (fixtures/cuda_pipeline_decided.ts): a
// 2-stage GPT-tiny pipeline held by one rank, and split over 2 ranks sharing cuda:0 (shm), trains 6
// batches of 3 micro-batches with the step decided on the device and, in the same process, decided on
// the host (engineTesting.hostDecides). bf16 (scale-1 static scaler, AdamW, clipping 0.5), f16 (static
// scale 1024) and f16dyn (DynamicLossScaler from 2^20, window 2, kept on the device: its first two
// batches overflow, its scale grows back at the last), each with batch 3's gradients overflowing (a skip
// decided on the device after the optimizer has state, taken back at settle), and f32 (SGD Nesterov,
// clipping 0.05): losses, lr, skipped steps, norms and the loss scale after every batch and every weight
// at the end bit for bit on every rank; a stepDecision launch per batch once a plain step has made the
// optimizer's state; one native.read fewer per such batch than the host way (the sums: only the loss is
// read, once; fp16's dynamic scale needs none). f16dyn then loads a scaler state on the host
// (engine.lossScalerChanged(), as a checkpoint load) and one more batch equals the host way's, bit for
// bit. Prints one SKIP line without a device.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable, native } from '../../src/index.ts';
import { expectExit, runLauncher } from './helpers.ts';

interface Result {
  case: string;
  rank: number;
  size: number;
  equal: Record<string, boolean>;
  skipped: number[];
  norms: (number | null)[];
  scales: number[];
  reads: number[];
  hostReads: number[];
  decisions: number;
  hostDecisions: number;
  weights: number;
}

const CASES = ['bf16', 'f16', 'f16dyn', 'f32'];
const [STEPS, BLOW_UP] = [6, 3];

async function launch(ranks: number): Promise<void> {
  const r = await runLauncher(['--num_procs', String(ranks), '--no_local_rank'], 'cuda_pipeline_decided.ts', [CASES.join(',')], { timeoutMs: 300_000 });
  expectExit(r, 0, `cuda_pipeline_decided on ${ranks} rank(s)`);
  const results = [...r.stdout.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]) as Result);
  assert.is(results.length, ranks * CASES.length, 'every rank reported every case');
  for (const x of results) {
    const at = `${x.case} on ${ranks} rank(s), rank ${x.rank}`;
    for (const [what, same] of Object.entries(x.equal)) assert.ok(same, `${at}: ${what} decided on the device = decided on the host, bit for bit`);
    assert.ok(x.weights > 0, `${at}: the rank holds weights`);
    if (x.case === 'f16dyn') {
      // The 7th entry: one more batch after a scaler state (2^12) was loaded on the host.
      assert.equal(x.scales, [2 ** 19, 2 ** 18, 2 ** 18, 2 ** 17, 2 ** 17, 2 ** 18, 2 ** 12], `${at}: the scale halves on each overflow, grows after 2 clean steps, then is the loaded one`);
      assert.is(x.skipped.pop(), 3, `${at}: the batch after the load steps`);
      x.norms.pop();
    }
    const skippedAt = x.skipped.map((n, s) => n > (s === 0 ? 0 : x.skipped[s - 1]));
    const want = x.case === 'f16dyn' ? [true, true, false, true, false, false] : x.skipped.map((_, s) => x.case !== 'f32' && s === BLOW_UP);
    assert.equal(skippedAt, want, `${at}: the batches skipped (skippedSteps after each: ${x.skipped})`);
    // Clipping acts on every step that is not skipped (JSON writes a skipped step's NaN as null).
    x.norms.forEach((n, s) => assert.ok(skippedAt[s] ? n === null : (n as number) > 0.05, `${at}: batch ${s}'s norm ${n}`));
    // The first batch that steps makes the optimizer's state; every later one is decided on the device.
    const first = skippedAt.indexOf(false);
    assert.is(x.hostDecisions, 0, `${at}: the host way launches no stepDecision`);
    const extra = x.case === 'f16dyn' ? 1 : 0; // the batch after the load
    assert.is(x.decisions, STEPS - 1 - first + extra, `${at}: one stepDecision per batch after batch ${first}`);
    assert.equal(x.reads, x.hostReads.map((n, s) => (s <= first ? n : n - 1)), `${at}: native.read per trainBatch decided (${x.reads}) vs host (${x.hostReads})`);
  }
}

if (!cudaIsAvailable()) {
  test('pipeline steps decided on cuda:0', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/dist/cuda_pipeline_decided (cuda:0): no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('one rank holding 2 stages: the step decided on cuda:0 = the host-decided step (bf16, f16 static and dynamic with skips; f32), no read of the sums', async () => {
    await launch(1);
  });
  test('2 ranks on cuda:0 over shm: the step decided on cuda:0 = the host-decided step on both ranks', async () => {
    await launch(2);
  });
}

test.run();
