// fp16 GPT tiny through a 2-stage pipeline (fixtures/pipeline_fp16_gpt.ts) against one process
// running the same micro-batches through GPT: dynamic loss scale from 2^20 (overflowing steps
// skipped, the scale growing after two clean steps), AdamW on fp32 masters, clipping; 1F1B plain and
// with ZeRO-1, and ZB-H1 (weight gradients deferred to W actions, a separate f16 matmul each). The scale traces are equal (the same steps skipped) and the losses equal bit for bit:
// every stage computes what the one process does, micro-batch by micro-batch. The weights differ
// by rounding order only: the tied token embedding's two f16 gradients (embedding and head) are
// accumulated over the micro-batches separately and summed across stages, where the one process
// adds them into one f16 gradient as it goes; that reaches the other weights through the clipping
// norm and the next steps' activations. Since the gradients are unscaled in f32 by the optimizer
// (not in f16, which flushed everything below 6e-8 to zero), gradient elements of ~1e-9 reach Adam,
// whose eps of 1e-8 lets them move a weight by a fraction of lr; most likely rounding residues of
// nearly cancelling sums, rounded differently by the two orders (measured, not traced element by element). Tolerance: every weight within 5e-3 x max(1, |w|)
// (half an Adam step at lr 1e-2); measured 2.4e-4 (wte), 4.3e-3 (the rest; 2.5e-3 while linear + GELU rounded
// the pre-activation before GELU, 2.3e-4 when unscaled in f16). ZB-H1's deferral node sits between the product and
// the fused GELU, so its stages round as the one process does.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

interface Result {
  case: string;
  rank: number;
  losses: number[];
  refLosses: number[];
  lossRel: number;
  scales: number[];
  refScales: number[];
  skipped: number;
  tiedAbs: number;
  restAbs: number;
  restWorst: string;
  dtype: string;
}

test('fp16 GPT tiny, pp 2 with 1F1B (plain AdamW and ZeRO-1) and ZB-H1: loss-scale trace and losses equal one process, weights within 5e-3', async () => {
  const r = await runLauncher(['--num_procs', '2', '--no_local_rank'], 'pipeline_fp16_gpt.ts', ['plain,zero1,zb-h1'], { timeoutMs: 55_000 });
  expectExit(r, 0, 'fp16 GPT pipeline on 2 ranks');
  const rs = [...r.stdout.matchAll(/^\[rank \d\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]) as Result);
  assert.is(rs.length, 6);
  for (const x of rs) {
    const at = `${x.case} rank ${x.rank}`;
    console.log(`  ${at}: losses ${x.lossRel}, tied embedding ${x.tiedAbs.toExponential(2)}, other weights ${x.restAbs.toExponential(2)}, scales ${x.scales}`);
    assert.is(x.dtype, 'f16');
    assert.equal(x.scales, x.refScales, `${at}: scale trace`);
    assert.ok(x.skipped > 0 && x.skipped < x.scales.length, `${at}: some steps overflowed and were skipped (${x.skipped})`);
    assert.ok(x.scales.some((s, i) => i > 0 && s > x.scales[i - 1]), `${at}: the scale grew after clean steps (${x.scales})`);
    assert.is(x.lossRel, 0, `${at}: losses ${x.losses} vs ${x.refLosses}`);
    assert.ok(x.tiedAbs <= 5e-3, `${at}: the tied token embedding within 5e-3 (got ${x.tiedAbs})`);
    assert.ok(x.restAbs <= 5e-3, `${at}: the other weights within 5e-3 (${x.restWorst} differs by ${x.restAbs})`);
  }
});

test.run();
