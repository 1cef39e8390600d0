// fp16 (DeepSpeed's `fp16: {enabled: true}`) GPT tiny through initialize() on 2 real ranks at ZeRO
// stages 0-3 (fixtures/engine_fp16_gpt.ts) against one process training the whole batch the same
// way by hand: f16 model, dynamic loss scale from 2^14 doubling every 2 steps, AdamW (lr 3e-3) on
// fp32 masters, clipping, 6 steps. The loss-scale traces are equal. Each rank's f16 gradients come
// from its half of the batch and are averaged, so they round differently from the one process's
// (2^-11 relative per rounding); Adam turns an element whose gradient is mostly rounding noise into
// a step of up to lr either way. The attention key biases are all noise (their true gradient is
// exactly zero) and, since the optimizer unscales the f16 gradients in f32 (f16 unscaling flushed
// that noise to zero), they take such steps every step: they are checked apart. Tolerances: losses
// within 2e-3 relative (bf16's engine test allows 1e-2, test/dist/engine_precision.test.ts); every
// other weight within 4e-3 x max(1, its tensor's largest value), about one Adam step; the key
// biases within 3.6e-2 (2 x 6 steps x lr: any noise); the update of the other weights as a whole,
// ||Δ2 ranks - Δ1 process|| / ||Δ1 process||, within 1e-2. Measured: losses 3.0e-6, weights 2.8e-3
// (one element of h.0.mlp.c_fc.weight), key biases 5.6e-3 (nvcc build) / 6.8e-3 (emu build), update 2.3e-3.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

interface Stage {
  scales: number[];
  refScales: number[];
  lossRel: number;
  weightRel: number;
  worst: string;
  updateRel: number;
  keyBiasRel: number;
}

test('fp16 GPT tiny on 2 ranks, ZeRO 0-3: the same loss-scale trace as one process, losses within 2e-3, weights within 4e-3, key biases within 3.6e-2, update within 1e-2', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'engine_fp16_gpt.ts', [], { timeoutMs: 60_000 });
  expectExit(r, 0, 'fp16 engine on 2 ranks');
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  const results = JSON.parse((m as RegExpExecArray)[1]) as Record<string, Stage>;
  assert.equal(Object.keys(results), ['stage0', 'stage1', 'stage2', 'stage3']);
  for (const [name, s] of Object.entries(results)) {
    console.log(`  ${name}: losses ${s.lossRel.toExponential(2)}, weights ${s.weightRel.toExponential(2)} (${s.worst}), key biases ${s.keyBiasRel.toExponential(2)}, update ${s.updateRel.toExponential(2)}`);
    assert.equal(s.scales, s.refScales, `${name}: loss-scale trace`);
    assert.equal(s.scales, [2 ** 14, 2 ** 14, 2 ** 15, 2 ** 15, 2 ** 16, 2 ** 16], `${name}: no overflow, the scale grew every 2 steps`);
    assert.ok(s.lossRel <= 2e-3, `${name}: losses within 2e-3 relative (got ${s.lossRel})`);
    assert.ok(s.weightRel <= 4e-3, `${name}: weights within 4e-3 (got ${s.weightRel} at ${s.worst})`);
    assert.ok(s.keyBiasRel <= 3.6e-2, `${name}: attention key biases within 3.6e-2 (got ${s.keyBiasRel})`);
    assert.ok(s.updateRel <= 1e-2, `${name}: the update within 1e-2 relative (got ${s.updateRel})`);
  }
});

test.run();
