// ZeRO stage 3 through initialize() and the Engine (fixtures/engine_stage3.ts), GPT tiny:
// - 2 ranks, f32, accumulation 2, gradient_clipping 1.0, WarmupLR: per-step losses and gradient
//   norms within 1e-6 relative of stage 0 (measured: equal losses, norms ~1e-8), final weights
//   within 1e-6 x max(1, |w|) (measured ~6e-8), the attention key bias within 1e-4 (its true
//   gradient is zero, see batches.ts); engine.stage is 3.
// - save16bitModel at stage 3 gathers the partitions: the file equals the gathered weights bit
//   for bit; without stage3_gather_16bit_weights_on_model_save it is refused on every rank.
// - checkpoints: stage 3 saved at dp=4 loads at stage 2 dp=2, and stage 2 at dp=4 loads at stage 3
//   dp=2; the next step's loss equals the saving run's within 1e-6 relative.
// - bf16 (bf16.enabled, a bf16 model) at stage 3 gives the same losses and weights as at stage 2
//   (measured: equal), and save16bitModel writes the gathered bf16 weights exactly.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';
import { assertReloadedLoss } from './rank_records.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'mt-stage3-'));

test('stage 3 via initialize on 2 ranks equals stage 0 (accumulation 2, clipping, WarmupLR); save16bitModel gathers the weights', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'engine_stage3.ts', ['equiv', tmp], { timeoutMs: 60_000 });
  expectExit(r, 0, 'stage 3 vs stage 0');
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  const c = JSON.parse(m![1]);
  assert.is(c.stage, 3);
  assert.ok(c.lossRel <= 1e-6, `losses within 1e-6 relative (got ${c.lossRel})`);
  assert.ok(c.normRel <= 1e-6, `gradient norms within 1e-6 relative (got ${c.normRel})`);
  assert.ok(c.norms.some((v: number) => v > 1), `clipping at 1.0 was active (${c.norms})`);
  assert.ok(c.weightAbs <= 1e-6, `weights within 1e-6 (got ${c.weightAbs} at ${c.worst})`);
  assert.ok(c.keyBiasAbs <= 1e-4, `attention key bias within 1e-4 (got ${c.keyBiasAbs})`);
  assert.is(c.file, path.join(tmp, 'stage3.safetensors'));
  assert.equal(c.fileMismatch, [], 'the file holds the gathered weights bit for bit');
  const rejects = [...r.stdout.matchAll(/^\[rank \d\] REJECT16 (.*)$/gm)].map((x) => x[1]);
  assert.is(rejects.length, 2, 'both ranks refuse');
  for (const msg of rejects) assert.match(msg, /stage3_gather_16bit_weights_on_model_save is false/);
});

for (const [from, to] of [[3, 2], [2, 3]]) {
  test(`stage ${from} checkpoint saved at dp=4 loads at stage ${to} dp=2; the next loss matches within 1e-6`, async () => {
    const dir = path.join(tmp, `ck${from}${to}`);
    const saved = await runLauncher(['--num_procs', '4'], 'engine_stage3.ts', ['save', dir, String(from)], { timeoutMs: 60_000 });
    expectExit(saved, 0, `save at stage ${from} dp=4`);
    const loaded = await runLauncher(['--num_procs', '2'], 'engine_stage3.ts', ['load', dir, String(to)], { timeoutMs: 60_000 });
    expectExit(loaded, 0, `load at stage ${to} dp=2`);
    assertReloadedLoss(saved.stdout, loaded.stdout, `dp=2 stage ${to} vs dp=4 stage ${from}`);
  });
}

test('stage 3 in bf16 (bf16.enabled) trains like stage 2 in bf16; save16bitModel writes bf16', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'engine_stage3.ts', ['bf16', tmp], { timeoutMs: 60_000 });
  expectExit(r, 0, 'bf16 stages 2 and 3');
  const m = /^\[rank 0\] BF16 (.*)$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  const c = JSON.parse(m![1]);
  assert.ok(c.losses.s3.every(Number.isFinite), `finite losses (${c.losses.s3})`);
  assert.ok(c.lossRel <= 1e-3, `losses within 1e-3 of stage 2's (got ${c.lossRel}: ${c.losses.s3} vs ${c.losses.s2})`);
  assert.ok(Math.abs(c.l1.s3 - c.l1.s2) <= 1e-3 * c.l1.s2, `weights' L1 norm within 1e-3 (${c.l1.s3} vs ${c.l1.s2})`);
  assert.equal(c.fileCheck, { bad: [], dtypes: ['bf16'] }, 'save16bitModel writes the gathered bf16 weights');
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));

test.run();
