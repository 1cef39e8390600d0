// initialize()'s other ways in and the Engine's smaller methods on 2 real ranks (fixtures/engine_api.ts),
// GPT tiny, 3 steps:
// - the config given as a JSON file path (comments, trailing comma) equals, bit for bit, the same config
//   object with the optimizer and scheduler passed in: an AdamW and a WarmupLR instance (stage 0), an
//   optimizer spec and a scheduler factory (stages 1 and 3);
// - modelParameters (stage 0): a parameter left out stays bit-identical while all the others train;
// - engine.eval()/train() set every submodule's training flag;
// - loadCheckpoint after 3 steps, then one step: with the scheduler state the lr continues the schedule
//   (equals the uninterrupted run's); loadLrSchedulerStates false keeps the saved lr until the fresh
//   schedule's first step (warmup_min_lr); loadOptimizerStates and loadLrSchedulerStates false leave the
//   fresh engine's lr. globalSteps comes back in every case;
// - engine.zeroGrad() called between the two micro-batches of an accumulation window (stages 0-3): the
//   weights after that step equal, bit for bit, a run whose window never back-propagated the dropped
//   micro-batch (step() alone), and differ from a run that kept it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'mt-engine-api-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

interface Run { hash: string; lr: number; scheduler?: string | null }
interface Api {
  [stage: string]: unknown;
  modelParameters: { changed: number; total: number; frozenChanged: boolean };
  modes: { eval: boolean[]; train: boolean[] };
  load: Record<string, number[]>;
  zeroGrad: Record<string, Record<'dropped' | 'never' | 'kept', { hash: string; globalSteps: number }>>;
}

test('initialize: config file vs passed optimizer/scheduler (stages 0, 1, 3), modelParameters, train/eval, loadCheckpoint lr options, zeroGrad between micro-batches (stages 0-3)', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'engine_api.ts', [tmp], { timeoutMs: 60_000 });
  expectExit(r, 0, 'engine api on 2 ranks');
  const lines = [...r.stdout.matchAll(/^\[rank \d\] API (.*)$/gm)].map((m) => m[1]);
  assert.is(lines.length, 2, 'both ranks reported');
  assert.is(lines[0], lines[1], 'both ranks agree');
  const api = JSON.parse(lines[0]) as Api;
  for (const stage of [0, 1, 3]) {
    const { fileRun, passedRun } = api[`stage${stage}`] as { fileRun: Run; passedRun: Run };
    assert.is(passedRun.hash, fileRun.hash, `stage ${stage}: passed optimizer + scheduler equal the config file's bit for bit`);
    assert.is(passedRun.lr, fileRun.lr, `stage ${stage}: same lr`);
    assert.is(passedRun.scheduler, 'WarmupLR');
  }
  assert.equal(api.modelParameters, { changed: 27, total: 28, frozenChanged: false }, 'only the given parameters train');
  assert.equal(api.modes, { eval: [false], train: [true] });
  const { straight, all, noSched, noOptimNoSched } = api.load;
  const min = 1e-3;
  assert.is(all[1], straight[0], 'with the scheduler state the lr continues the schedule');
  assert.ok(all[0] > min && all[0] < straight[0], `the saved lr is mid-warmup (${all[0]})`);
  assert.equal(noSched, [all[0], min, 4], 'loadLrSchedulerStates false: the saved lr, then the fresh schedule');
  assert.equal(noOptimNoSched, [min, min, 4], 'neither: the fresh engine lr');
  assert.is(all[2], 4, 'globalSteps came back');
  for (const stage of [0, 1, 2, 3]) {
    const { dropped, never, kept } = api.zeroGrad[`stage${stage}`];
    assert.is(dropped.hash, never.hash, `stage ${stage}: zeroGrad() between micro-batches drops the first one's gradients (equals a run that never saw it)`);
    assert.is.not(kept.hash, dropped.hash, `stage ${stage}: keeping that micro-batch changes the step`);
    assert.equal([dropped.globalSteps, never.globalSteps, kept.globalSteps], [2, 2, 2], `stage ${stage}: two optimizer steps`);
  }
});

test.run();
