// GPT-tiny parallelized with gptTensorParallelPlan against single-process training, in real
// processes through the launcher: 4 AdamW steps (f32) at tp = 2 and 4, without and with sequence
// parallelism. Per-step losses within 1e-5 relative, consolidated final weights within 5e-5 of
// max(1, |w|) (measured: losses equal to f32 rounding, weights ~4e-6); clipped gradient norms within
// 1e-5 relative of clipGradNorm's on the unsharded model; see tp_gpt_common.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

async function expectTraining(np: number): Promise<void> {
  const r = await runLauncher(['--num_procs', String(np)], 'tp_gpt.ts', [], { timeoutMs: 50_000 });
  expectExit(r, 0, `tp_gpt.ts on ${np} ranks`);
  for (const c of ['tensorParallel', 'sequenceParallel', 'clipped']) {
    const ranks = [...r.stdout.matchAll(new RegExp(`^\\[rank (\\d+)\\] OK ${c} `, 'gm'))].map((m) => Number(m[1])).sort();
    assert.equal(ranks, [...Array(np).keys()], `case ${c} on every rank:\n${r.stdout}`);
  }
}

test('tp GPT: tp = 2 trains as one process (losses per step, final weights), without and with sequence parallelism, and with global-norm clipping', async () => {
  await expectTraining(2);
});

test('tp GPT: the same at tp = 4 (one head, 16 vocabulary rows and 4 tokens of 16 per rank)', async () => {
  await expectTraining(4);
});

test.run();
