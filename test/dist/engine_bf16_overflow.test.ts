// bf16 overflow checks in the Engine on 2 real ranks (fixtures/engine_bf16_overflow.ts): GPT tiny in
// bf16 at ZeRO stages 0-3; at step 1 only rank 1's gradients overflow. Every rank skips that step
// (weights, Adam's step count and the WarmupLR lr unchanged; skippedSteps 1; globalSteps still counts
// it, as DeepSpeed's; the bf16 scale stays 1), so the losses are the control run's with step 1
// repeated, and the final weights equal the control's bit for bit. Without the bf16 check the weights
// would turn NaN; without the all-reduced flag the ranks would disagree.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

interface Run { stage: number; overflowAt: number; losses: number[]; lrs: number[]; hash: string; finite: boolean; skipped: number; globalSteps: number; lossScale: number }

test('bf16, stages 0-3 on 2 ranks: an overflow on one rank skips the step everywhere; the run continues as if it had not happened', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'engine_bf16_overflow.ts', [], { timeoutMs: 60_000 });
  expectExit(r, 0, 'bf16 overflow on 2 ranks');
  const runs = [...r.stdout.matchAll(/^\[rank (\d)\] RUN (.*)$/gm)].map((m) => ({ rank: Number(m[1]), ...(JSON.parse(m[2]) as Run) }));
  assert.is(runs.length, 16, 'four stages, two runs, two ranks');
  for (const stage of [0, 1, 2, 3]) {
    for (const rank of [0, 1]) {
      const what = `stage ${stage}, rank ${rank}`;
      const control = runs.find((x) => x.stage === stage && x.rank === rank && x.overflowAt < 0)!;
      const hit = runs.find((x) => x.stage === stage && x.rank === rank && x.overflowAt === 1)!;
      assert.is(control.skipped, 0, `${what}: the control run skips nothing`);
      assert.ok(control.losses[2] < control.losses[0], `${what}: the control run trains (${control.losses})`);
      assert.equal({ skipped: hit.skipped, globalSteps: hit.globalSteps, lossScale: hit.lossScale, finite: hit.finite }, { skipped: 1, globalSteps: 4, lossScale: 1, finite: true }, what);
      const [l0, l1, l2] = control.losses;
      assert.equal(hit.losses, [l0, l1, l1, l2], `${what}: losses are the control's with the skipped step repeated`);
      const [r0, r1, r2] = control.lrs;
      assert.equal(hit.lrs, [r0, r1, r1, r2], `${what}: the lr did not advance on the skipped step`);
      assert.is(hit.hash, control.hash, `${what}: final weights equal the control's bit for bit`);
    }
  }
});

test.run();
