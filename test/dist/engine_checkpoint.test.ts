// engine.saveCheckpoint / engine.loadCheckpoint on real ranks (fixtures/engine_checkpoint.ts), GPT
// tiny, AdamW + WarmupLR, clipping 1.0, f32:
// - stages 0, 1, 2, 3 on 2 ranks (accumulation 2): 10 steps + save + load into a freshly seeded engine
//   + 10 steps equals 20 straight steps bit for bit (losses and every final weight exactly equal);
//   globalSteps, microSteps, the lr and clientState come back.
// - stages 1 and 2: a checkpoint saved at dp=4 loads at dp=2; the next step's loss equals the one
//   the 4-rank run computes within 1e-6 relative (the reduction order differs; measured ~3e-8).
// - a truncated shard: loadCheckpoint throws on every rank with the file named, no hang.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, type Run, runLauncher } from './helpers.ts';
import { jobOutputs } from './job_lines.ts';
import { assertReloadedLoss } from './rank_records.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'mt-engine-ck-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

// Two launches run every case as jobs (the fixture's "jobs" mode), so the ranks start twice, not six
// times: the dp=4 saves of stages 1 and 2, then on 2 ranks the round trip, the dp=2 loads and the torn shard.
const reshard = (stage: number) => path.join(tmp, `reshard${stage}`);
const FOUR = [1, 2].map((stage) => `save,${reshard(stage)},${stage}`);
const TWO = [`roundtrip,${path.join(tmp, 'rt')}`, ...[1, 2].map((stage) => `load,${reshard(stage)},${stage}`), `torn,${path.join(tmp, 'torn')},1`];
let four: Promise<Run> | null = null;
let two: Promise<Run> | null = null;

/** The stdout of `job` on `np` ranks (launching the jobs the first time: the 4-rank saves first). */
async function jobStdout(np: 2 | 4, job: string): Promise<string> {
  four ??= runLauncher(['--num_procs', '4'], 'engine_checkpoint.ts', ['jobs', ...FOUR], { timeoutMs: 120_000 });
  two ??= four.then(() => runLauncher(['--num_procs', '2'], 'engine_checkpoint.ts', ['jobs', ...TWO], { timeoutMs: 240_000 }));
  const saved = await four;
  expectExit(saved, 0, 'saves at dp=4');
  if (np === 4) return jobOutputs(saved.stdout, FOUR.length)[FOUR.indexOf(job)];
  const r = await two;
  expectExit(r, 0, 'round trip, loads at dp=2 and torn shard on 2 ranks');
  return jobOutputs(r.stdout, TWO.length)[TWO.indexOf(job)];
}

interface Round {
  tag: string;
  sLosses: number[];
  rLosses: number[];
  weightDiffs: number;
  clientState: unknown;
  loadedTag: string;
  counters: { globalSteps: number; microSteps: number; lr: number };
}

test('engine checkpoint: stages 0, 1, 2, 3 on 2 ranks: 10 steps + save + load + 10 steps equals 20 steps bit for bit', async () => {
  const stdout = await jobStdout(2, TWO[0]);
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(stdout);
  assert.ok(m, stdout);
  const results = JSON.parse(m![1]) as Record<string, Round>;
  for (const stage of [0, 1, 2, 3]) {
    const c = results[`stage${stage}`];
    assert.is(c.tag, 'global_step10', `stage ${stage}: DeepSpeed's default tag`);
    assert.is(c.loadedTag, 'global_step10', `stage ${stage}: latest`);
    assert.equal(c.rLosses, c.sLosses, `stage ${stage}: losses equal bit for bit`);
    assert.is(c.weightDiffs, 0, `stage ${stage}: final weights equal bit for bit`);
    assert.equal(c.clientState, { epoch: 10, note: 'hi' });
    assert.is(c.counters.globalSteps, 10);
    assert.is(c.counters.microSteps, 20);
    assert.ok(c.counters.lr > 1e-3 && c.counters.lr < 1e-2, `stage ${stage}: the warmup lr came back (${c.counters.lr})`);
  }
});

for (const stage of [1, 2]) {
  test(`engine checkpoint: stage ${stage} saved at dp=4 loads at dp=2; the next loss matches within 1e-6`, async () => {
    const saved = await jobStdout(4, `save,${reshard(stage)},${stage}`);
    const loaded = await jobStdout(2, `load,${reshard(stage)},${stage}`);
    assertReloadedLoss(saved, loaded, 'dp=2 vs dp=4');
  });
}

test('engine checkpoint: a truncated shard is refused on every rank with the file named', async () => {
  const stdout = await jobStdout(2, TWO[3]);
  const lines = [...stdout.matchAll(/^\[rank \d\] TORN (.*)$/gm)].map((x) => x[1]);
  assert.is(lines.length, 2, stdout);
  for (const l of lines) assert.match(l, /rank_00001\.bin has 100 bytes but its index records \d+; the shard is truncated/);
});

test.run();
