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
import { expectExit, runLauncher } from './helpers.ts';
import { assertReloadedLoss } from './rank_records.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'mt-engine-ck-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

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
  const r = await runLauncher(['--num_procs', '2'], 'engine_checkpoint.ts', ['roundtrip', path.join(tmp, 'rt')], { timeoutMs: 120_000 });
  expectExit(r, 0, 'round trip');
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
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
    const dir = path.join(tmp, `reshard${stage}`);
    const saved = await runLauncher(['--num_procs', '4'], 'engine_checkpoint.ts', ['save', dir, String(stage)], { timeoutMs: 60_000 });
    expectExit(saved, 0, 'save at dp=4');
    const loaded = await runLauncher(['--num_procs', '2'], 'engine_checkpoint.ts', ['load', dir, String(stage)], { timeoutMs: 60_000 });
    expectExit(loaded, 0, 'load at dp=2');
    assertReloadedLoss(saved.stdout, loaded.stdout, 'dp=2 vs dp=4');
  });
}

test('engine checkpoint: a truncated shard is refused on every rank with the file named', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'engine_checkpoint.ts', ['torn', path.join(tmp, 'torn'), '1'], { timeoutMs: 30_000 });
  expectExit(r, 0, 'torn');
  const lines = [...r.stdout.matchAll(/^\[rank \d\] TORN (.*)$/gm)].map((x) => x[1]);
  assert.is(lines.length, 2, r.stdout);
  for (const l of lines) assert.match(l, /rank_00001\.bin has 100 bytes but its index records \d+; the shard is truncated/);
});

test.run();
