// Mixed precision in the Engine on 2 real ranks (fixtures/engine_precision.ts).
// bf16, ZeRO stage 1: GPT tiny built in bf16 (fp32 masters in ZeroStage12), 6 steps on one
// repeated global batch; per-step losses within 1e-2 relative of an fp32 single-process reference
// from the same weights (bf16 has 8 mantissa bits; measured ~1.5e-3), and falling.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

function results(stdout: string): { rank0: Record<string, unknown>; steps: string[] } {
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(stdout);
  assert.ok(m, stdout);
  const steps = [...stdout.matchAll(/^\[rank \d\] STEP (.*)$/gm)].map((x) => x[1]);
  return { rank0: JSON.parse(m![1]) as Record<string, unknown>, steps };
}

test('bf16, stage 1 on 2 ranks: losses track the fp32 reference within 1e-2 relative and fall; no step skipped', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'engine_precision.ts', ['bf16', '6'], { timeoutMs: 60_000 });
  expectExit(r, 0, 'bf16 engine on 2 ranks');
  const { rank0, steps } = results(r.stdout);
  const { losses, refLosses } = rank0 as { losses: number[]; refLosses: number[] };
  const rel = Math.max(...refLosses.map((e, i) => Math.abs(losses[i] - e) / Math.abs(e)));
  assert.ok(rel <= 1e-2, `losses within 1e-2 relative (got ${rel}: ${losses} vs ${refLosses})`);
  assert.ok(losses[losses.length - 1] < losses[0] * 0.85, `loss falls (${losses})`);
  assert.is(steps.length, 2, 'both ranks reported');
  for (const s of steps) assert.equal(JSON.parse(s), { skipped: 0, globalSteps: 6, lossScale: 1, dtypes: ['bf16'] });
});

test.run();
