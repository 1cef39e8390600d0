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
import { expectExit, type Run, runLauncher } from './helpers.ts';
import { jobOutputs } from './job_lines.ts';
import { assertReloadedLoss } from './rank_records.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'mt-stage3-'));

// Two launches run every case as jobs (the fixture's "jobs" mode), so the ranks start twice, not six
// times: the dp=4 saves at stages 3 and 2, then on 2 ranks the equivalence, the dp=2 loads and bf16.
const ck = (from: number, to: number) => path.join(tmp, `ck${from}${to}`);
const FOUR = [`save,${ck(3, 2)},3`, `save,${ck(2, 3)},2`];
const TWO = [`equiv,${tmp}`, `load,${ck(3, 2)},2`, `load,${ck(2, 3)},3`, `bf16,${tmp}`];
let four: Promise<Run> | null = null;
let two: Promise<Run> | null = null;

/** The stdout of `job` on `np` ranks (launching the jobs the first time: the 4-rank saves first). */
async function jobStdout(np: 2 | 4, job: string): Promise<string> {
  four ??= runLauncher(['--num_procs', '4'], 'engine_stage3.ts', ['jobs', ...FOUR], { timeoutMs: 120_000 });
  two ??= four.then(() => runLauncher(['--num_procs', '2'], 'engine_stage3.ts', ['jobs', ...TWO], { timeoutMs: 240_000 }));
  const saved = await four;
  expectExit(saved, 0, 'saves at dp=4');
  if (np === 4) return jobOutputs(saved.stdout, FOUR.length)[FOUR.indexOf(job)];
  const r = await two;
  expectExit(r, 0, 'equivalence, loads at dp=2 and bf16 on 2 ranks');
  return jobOutputs(r.stdout, TWO.length)[TWO.indexOf(job)];
}

test('stage 3 via initialize on 2 ranks equals stage 0 (accumulation 2, clipping, WarmupLR); save16bitModel gathers the weights', async () => {
  const stdout = await jobStdout(2, TWO[0]);
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(stdout);
  assert.ok(m, stdout);
  const c = JSON.parse(m![1]);
  assert.is(c.stage, 3);
  assert.ok(c.lossRel <= 1e-6, `losses within 1e-6 relative (got ${c.lossRel})`);
  assert.ok(c.normRel <= 1e-6, `gradient norms within 1e-6 relative (got ${c.normRel})`);
  assert.ok(c.norms.some((v: number) => v > 1), `clipping at 1.0 was active (${c.norms})`);
  assert.ok(c.weightAbs <= 1e-6, `weights within 1e-6 (got ${c.weightAbs} at ${c.worst})`);
  assert.ok(c.keyBiasAbs <= 1e-4, `attention key bias within 1e-4 (got ${c.keyBiasAbs})`);
  assert.is(c.file, path.join(tmp, 'stage3.safetensors'));
  assert.equal(c.fileMismatch, [], 'the file holds the gathered weights bit for bit');
  const rejects = [...stdout.matchAll(/^\[rank \d\] REJECT16 (.*)$/gm)].map((x) => x[1]);
  assert.is(rejects.length, 2, 'both ranks refuse');
  for (const msg of rejects) assert.match(msg, /stage3_gather_16bit_weights_on_model_save is false/);
});

for (const [from, to] of [[3, 2], [2, 3]]) {
  test(`stage ${from} checkpoint saved at dp=4 loads at stage ${to} dp=2; the next loss matches within 1e-6`, async () => {
    const saved = await jobStdout(4, `save,${ck(from, to)},${from}`);
    const loaded = await jobStdout(2, `load,${ck(from, to)},${to}`);
    assertReloadedLoss(saved, loaded, `dp=2 stage ${to} vs dp=4 stage ${from}`);
  });
}

test('stage 3 in bf16 (bf16.enabled) trains like stage 2 in bf16; save16bitModel writes bf16', async () => {
  const stdout = await jobStdout(2, TWO[3]);
  const m = /^\[rank 0\] BF16 (.*)$/m.exec(stdout);
  assert.ok(m, stdout);
  const c = JSON.parse(m![1]);
  assert.ok(c.losses.s3.every(Number.isFinite), `finite losses (${c.losses.s3})`);
  assert.ok(c.lossRel <= 1e-3, `losses within 1e-3 of stage 2's (got ${c.lossRel}: ${c.losses.s3} vs ${c.losses.s2})`);
  assert.ok(Math.abs(c.l1.s3 - c.l1.s2) <= 1e-3 * c.l1.s2, `weights' L1 norm within 1e-3 (${c.l1.s3} vs ${c.l1.s2})`);
  assert.equal(c.fileCheck, { bad: [], dtypes: ['bf16'] }, 'save16bitModel writes the gathered bf16 weights');
});

test.after(() => rmSync(tmp, { recursive: true, force: true }));

test.run();
