// Mixed precision in the Engine on 2 real ranks (fixtures/engine_precision.ts).
// bf16, ZeRO stage 1 (and 0, 3): GPT tiny built in bf16 (fp32 masters in the ZeRO partition), 6 steps on one
// repeated global batch; per-step losses within 1e-2 relative of an fp32 single-process reference
// from the same weights (bf16 has 8 mantissa bits; measured ~1.5e-3), and falling.
// fp16, ZeRO stage 2 (and 0, 3): an f16 linear model, dynamic loss scale from 2^24 (hysteresis 2, window 3),
// 16 steps: the first ten overflow and are skipped (weights bit-identical, lr not advanced, the
// scale halving after the hysteresis), later steps apply; the scale sequence equals a
// DynamicLossScaler fed the observed overflow pattern; both ranks report the same sequence.
// fp16 resume, stages 2 and 0: the same run saved after 12 steps (the scale already changed by overflows),
// loaded into a fresh engine (other weights, scaler back at 2^24) and continued to 16 steps: the scale
// sequence, losses, skipped counts and final weights equal the uninterrupted run's exactly.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DynamicLossScaler } from '../../src/index.ts';
import { expectExit, type Run, runLauncher } from './helpers.ts';
import { jobOutputs } from './job_lines.ts';

// Every case below is one job of a single 2-rank launch (the fixture's "jobs" mode): the ranks start
// once, not once per case. Each test reads its own job's lines.
const dir = mkdtempSync(path.join(tmpdir(), 'meshtrain-fp16-resume-'));
const SAVE_AT = 12;
const JOBS = [
  ...[1, 0, 3].map((stage) => `bf16,6,${stage}`),
  ...[2, 0, 3].map((stage) => `fp16,16,${stage}`),
  ...[2, 0].map((stage) => `fp16resume,16,${stage},${path.join(dir, `stage${stage}`)},${SAVE_AT}`),
];
let launched: Promise<{ run: Run; jobs: string[] }> | null = null;

/** The stdout of `job` (launching every job the first time). */
async function jobStdout(job: string): Promise<string> {
  launched ??= runLauncher(['--num_procs', '2'], 'engine_precision.ts', ['jobs', ...JOBS], { timeoutMs: 240_000 }).then((run) => ({ run, jobs: jobOutputs(run.stdout, JOBS.length) }));
  const { run, jobs } = await launched;
  expectExit(run, 0, `engine_precision jobs on 2 ranks`);
  return jobs[JOBS.indexOf(job)];
}
test.after(() => rmSync(dir, { recursive: true, force: true }));

function results(stdout: string): { rank0: Record<string, unknown>; steps: string[] } {
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(stdout);
  assert.ok(m, stdout);
  const steps = [...stdout.matchAll(/^\[rank \d\] STEP (.*)$/gm)].map((x) => x[1]);
  return { rank0: JSON.parse(m![1]) as Record<string, unknown>, steps };
}

for (const stage of [1, 0, 3]) test(`bf16, stage ${stage} on 2 ranks: losses track the fp32 reference within 1e-2 relative and fall; no step skipped`, async () => {
  const { rank0, steps } = results(await jobStdout(`bf16,6,${stage}`));
  const { losses, refLosses } = rank0 as { losses: number[]; refLosses: number[] };
  const rel = Math.max(...refLosses.map((e, i) => Math.abs(losses[i] - e) / Math.abs(e)));
  assert.ok(rel <= 1e-2, `losses within 1e-2 relative (got ${rel}: ${losses} vs ${refLosses})`);
  assert.ok(losses[losses.length - 1] < losses[0] * 0.85, `loss falls (${losses})`);
  assert.is(steps.length, 2, 'both ranks reported');
  for (const s of steps) assert.equal(JSON.parse(s), { skipped: 0, globalSteps: 6, lossScale: 1, dtypes: ['bf16'] });
});

interface Fp16Step {
  scaleBefore: number;
  scaleAfter: number;
  skipped: boolean;
  lrBefore: number;
  lrAfter: number;
  unchanged: boolean;
  finite: boolean;
  globalSteps: number;
}

for (const stage of [2, 0, 3]) test(`fp16, stage ${stage} on 2 ranks: overflowing steps skipped with weights and lr unchanged; the scale follows DeepSpeed's rules`, async () => {
  const { rank0, steps: reports } = results(await jobStdout(`fp16,16,${stage}`));
  const steps = (rank0 as { steps: Fp16Step[] }).steps;
  assert.is(reports.length, 2, 'both ranks reported');
  assert.is(reports[0], reports[1], 'both ranks took the same skip decisions and scales');
  assert.ok(steps[0].skipped && steps[1].skipped, 'the first steps overflow at 2^24');
  assert.ok(steps.slice(10).some((s) => !s.skipped), 'later steps apply');
  const trace = new DynamicLossScaler({ initScale: 2 ** 24, scaleWindow: 3, delayedShift: 2, minScale: 1 });
  steps.forEach((s, i) => {
    assert.is(s.scaleBefore, trace.lossScale, `step ${i}: scale before`);
    trace.update(s.skipped);
    assert.is(s.scaleAfter, trace.lossScale, `step ${i}: scale after`);
    assert.is(s.globalSteps, i + 1, `step ${i}: globalSteps counts skipped steps too (DeepSpeed)`);
    assert.ok(s.finite, `step ${i}: weights finite`);
    if (s.skipped) {
      assert.ok(s.unchanged, `step ${i}: skipped, weights unchanged`);
      assert.is(s.lrAfter, s.lrBefore, `step ${i}: skipped, the scheduler did not advance`);
    } else {
      assert.ok(!s.unchanged, `step ${i}: applied, weights changed`);
    }
  });
  assert.equal(steps.slice(0, 10).map((s) => s.skipped), Array(10).fill(true), 'overflow until the scale reaches 2^15');
  assert.is(steps[1].scaleAfter, 2 ** 23, 'hysteresis 2: the first overflow keeps the scale, the second halves it');
  const last = JSON.parse(reports[0]) as { skipped: number; globalSteps: number };
  assert.is(last.skipped, steps.filter((s) => s.skipped).length);
  assert.is(last.globalSteps, 16);
});

interface Trace {
  scales: number[];
  losses: number[];
  skipped: number[];
}

for (const stage of [2, 0]) test(`fp16, stage ${stage} on 2 ranks: resumed from a checkpoint, the loss scale, losses and weights continue exactly`, async () => {
  const saveAt = SAVE_AT;
  const stdout = await jobStdout(`fp16resume,16,${stage},${path.join(dir, `stage${stage}`)},${saveAt}`);
  const m = /^\[rank 0\] RESUME (.*)$/m.exec(stdout);
  assert.ok(m, stdout);
  const res = JSON.parse(m![1]) as {
    full: Trace; resumed: Trace; scaleAtSave: number; freshScale: number; weightsEqual: boolean;
    loaded: { scale: number; skipped: number; globalSteps: number; scaler: Record<string, number> };
  };
  const reports = [...stdout.matchAll(/^\[rank \d\] STEP (.*)$/gm)].map((x) => x[1]);
  assert.is(reports.length, 2, 'both ranks reported');
  const { full, resumed } = res;
  assert.ok(full.skipped[saveAt - 1] > 0, 'overflows before the save');
  assert.ok(res.scaleAtSave < 2 ** 24, `the scale changed before the save (${res.scaleAtSave})`);
  assert.is(res.freshScale, 2 ** 24, 'the fresh engine starts at the initial scale');
  assert.is(res.loaded.scale, res.scaleAtSave, 'the loaded scale is the saved one');
  assert.is(res.loaded.skipped, full.skipped[saveAt - 1], 'skippedSteps restored');
  assert.is(res.loaded.globalSteps, saveAt);
  assert.equal(resumed.scales, full.scales, 'same scale sequence');
  assert.equal(resumed.losses, full.losses, 'same losses');
  assert.equal(resumed.skipped, full.skipped, 'same skipped counts');
  assert.ok(new Set(full.scales.slice(saveAt)).size > 1 || full.skipped[15] > full.skipped[saveAt - 1], `the scaler does something after the save (${full.scales})`);
  assert.ok(res.weightsEqual, 'same final weights');
});

test.run();
