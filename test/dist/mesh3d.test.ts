// dp × pp × tp: GPT-tiny with tensor-parallel pipeline stages, plain AdamW or ZeRO 1/2/3 over dp, 1F1B (and once interleaved) over pp,
// clipping at 0.5 (active on the first step) over every axis, f32, 2 steps of 4 micro-batches per
// dp rank, against one process training on every micro-batch (fixtures/mesh3d.ts). Tolerances (tp
// only changes summation order): per-step losses and gradient norms within 1e-6 relative
// (measured ~1.4e-8 and ~4e-8); the consolidated (ZeRO-3: gathered) weights within 1e-5 of
// max(1, |w|) (measured ~1.5e-6); the attention key bias, whose true gradient is zero, within 1e-4.
// fp16-style loss scaling spans tp: a gradient overflowing on one tp rank of one stage skips the step
// on all 8 ranks (weights unchanged bit for bit), and the next step equals the reference's first.
// Dropout 0.1 (sequence parallel, interleaved, 4 stages) equals the same dp x tp run with every layer on
// each process (losses 1e-6 relative, weights 1e-5): the masks do not depend on the pipeline layout.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

interface Result {
  case: string;
  skipped?: number;
  unchanged?: boolean;
  rank: number;
  lossRel: number;
  normRel: number;
  refNorms: number[];
  weightAbs: number;
  dropoutActive?: boolean;
  worst: string;
  keyBiasAbs: number;
}

async function run(mesh: { dp: number; pp: number; tp: number }, cases: string[]): Promise<Result[]> {
  const n = mesh.dp * mesh.pp * mesh.tp;
  const r = await runLauncher(['--num_procs', String(n), '--no_local_rank'], 'mesh3d.ts', [JSON.stringify(mesh), cases.join(',')], { timeoutMs: 80_000 });
  expectExit(r, 0, `mesh3d ${JSON.stringify(mesh)}`);
  const results = [...r.stdout.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]) as Result);
  for (const c of cases) {
    const mine = results.filter((x) => x.case === c);
    assert.is(mine.length, n, `${c}: every rank reported`);
    for (const x of mine) {
      const at = `${JSON.stringify(mesh)} ${c} rank ${x.rank}`;
      assert.ok(x.lossRel <= 1e-6, `${at}: losses (rel ${x.lossRel})`);
      if (c === 'dropout') {
        assert.ok(x.dropoutActive, `${at}: dropout changed the loss`);
        assert.ok(x.weightAbs <= 1e-5, `${at}: weights (${x.weightAbs} at ${x.worst})`);
        continue;
      }
      if (c === 'overflow') {
        assert.is(x.skipped, 1, `${at}: the overflowing step was skipped`);
        assert.ok(x.unchanged, `${at}: weights unchanged by the skipped step`);
        continue;
      }
      assert.ok(x.normRel <= 1e-6, `${at}: gradient norms (rel ${x.normRel})`);
      assert.ok(x.refNorms[0] > 0.5, `${at}: clipping at 0.5 was active (${x.refNorms})`);
      assert.ok(x.weightAbs <= 1e-5, `${at}: weights (${x.weightAbs} at ${x.worst})`);
      assert.ok(x.keyBiasAbs <= 1e-4, `${at}: key bias (${x.keyBiasAbs})`);
    }
  }
  return results;
}

test('dp 2 x pp 2 x tp 2: plain AdamW and ZeRO-1/2/3, with and without sequence parallelism, and interleaved 1F1B (ZeRO-1, sequence parallel), train GPT-tiny as one process; an overflow on one tp rank skips the step everywhere; dropout (interleaved) draws the masks of the same dp x tp run without the pipeline', async () => {
  await run({ dp: 2, pp: 2, tp: 2 }, ['plain-sp', 'zero1', 'zero1-sp', 'zero2-sp', 'zero3', 'zero3-sp', 'zero1-sp-il', 'overflow', 'dropout']);
});

test('pp 2 x dp 2 with ZeRO-3 and ZeRO-2 (tp 1) train GPT-tiny as one process', async () => {
  await run({ dp: 2, pp: 2, tp: 1 }, ['zero3', 'zero2']);
});

test.run();
