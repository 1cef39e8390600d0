// PipelineEngine on 2 pipeline ranks (fixtures/pipeline.ts): GPipe, 1F1B, ZB-H1 and interleaved
// 1F1B (2 stages per rank) equal single-process GPT-tiny training (tolerances in
// pipeline_common.ts); recomputation gives identical gradients with a lower activation peak; a
// schedule with a backward before its forward is refused with the grid printed; dropout draws the
// same masks as one process holding every layer (per-layer streams, layer_rng.ts).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { checkTraining, type Result, runPipeline } from './pipeline_common.ts';

let results: Result[] | null = null;
const run = async () => (results ??= await runPipeline(2, 1, ['gpipe', '1f1b', 'zb-h1', 'interleaved', 'recompute', 'broken', 'eval', 'dropout', 'profile']));

for (const what of ['gpipe', '1f1b', 'zb-h1', 'interleaved']) {
  test(`pipeline pp=2 ${what}: losses, norms and weights equal one process; tied weights identical`, async () => {
    checkTraining(await run(), what, 2);
  });
}

test('pipeline pp=2: activationCheckpointInterval 1 gives identical gradients with a lower activation peak', async () => {
  for (const r of (await run()).filter((x) => x.case === 'recompute')) {
    assert.ok(r.nonzero, 'gradients were computed');
    assert.is(r.gradMaxDiff, 0, `rank ${r.rank}: gradients bit for bit`);
    assert.is(r.lossA, r.lossB);
    assert.ok((r.peakRecompute as number) < (r.peakPlain as number), `rank ${r.rank}: peak activation bytes ${r.peakRecompute} < ${r.peakPlain}`);
  }
});

test('pipeline pp=2: evalBatch (interleaved, forward only) reports the plain GPT\'s mean loss on every rank and leaves no gradients', async () => {
  const rs = (await run()).filter((x) => x.case === 'eval');
  assert.is(rs.length, 2);
  for (const r of rs) {
    assert.ok(Math.abs((r.loss as number) - (r.want as number)) <= 1e-6 * (r.want as number), `rank ${r.rank}: ${r.loss} vs ${r.want}`);
    assert.is(r.grads, 0);
    assert.is(r.training, false);
  }
});

test('pipeline pp=2: 1F1B holds fewer activations than GPipe on the first stage (2 micro-batches in flight, not 4)', async () => {
  const rs = await run();
  const peak = (what: string) => rs.find((x) => x.case === what && x.pp === 0)?.peakActivation as number;
  const [g, o] = [peak('gpipe'), peak('1f1b')];
  assert.ok(o < g, `1F1B ${o} bytes < GPipe ${g} bytes`);
});

test('pipeline pp=2: dropout 0.1 (ZB-H1, recomputation) draws the masks one process holding every layer draws: losses and weights equal', async () => {
  const rs = (await run()).filter((x) => x.case === 'dropout');
  assert.is(rs.length, 2);
  for (const r of rs) {
    assert.ok((r.lossRel as number) <= 1e-6, `rank ${r.rank}: losses ${r.losses} vs ${r.refLosses}`);
    assert.ok((r.weightAbs as number) <= 1e-5, `rank ${r.rank}: weights within 1e-5 (got ${r.weightAbs})`);
    const plain = r.plainLosses as number[];
    assert.ok(Math.abs(plain[0] - (r.refLosses as number[])[0]) > 1e-4, `dropout is active: ${plain[0]} without vs ${(r.refLosses as number[])[0]} with`);
  }
});

test('pipeline pp=2: profileLayerTimes over the pp group gives every rank rank 0\'s times and the same balanced partition, which trains', async () => {
  const rs = (await run()).filter((x) => x.case === 'profile');
  assert.is(rs.length, 2);
  const [a, b] = rs;
  assert.equal(a.costs, b.costs, 'the same times on both ranks');
  assert.is((a.costs as number[]).length, 8, 'one time per layer (GPT with 4 blocks)');
  assert.ok((a.costs as number[]).every((c) => c > 0), `${a.costs}`);
  assert.equal(a.boundaries, b.boundaries);
  assert.ok(Number.isFinite(a.loss as number) && a.loss === b.loss, `loss ${a.loss} on both ranks`);
});

test('pipeline: a broken schedule is refused before running, with the grid and the offending cell', async () => {
  const rs = (await run()).filter((x) => x.case === 'broken');
  assert.is(rs.length, 2);
  for (const r of rs) {
    assert.ok(r.rejected, 'refused');
    assert.is(r.name, 'ScheduleError');
    const msg = r.message as string;
    assert.match(msg, /1B0 comes before 1F0/);
    assert.match(msg, /step\s+rank 0\s+rank 1/);
    assert.match(msg, /\[1B0\]/);
  }
});

test.run();
