/**
 * AdamW on a CUDA device updates many parameters per launch (src/optim/adam_multi.ts,
 * native/cuda/adam_multi.cu) instead of one launch per parameter: parameters, fp32 masters and
 * both moments equal the per-parameter kernel's bit for bit over 3 steps (30 parameters of mixed
 * sizes: more than one launch's 24; bf16 with masters and f32 in one group; a parameter without
 * a gradient skipped), and the step queues ceil(n / 24) launches per group of dtypes and step number. Without a
 * device: one SKIP line (the CPU path is optim.test.ts's, unchanged).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AdamW, cudaCensus, cudaIsAvailable, formatCensus, manualSeed, native, randn, type Tensor } from '../../src/index.ts';

function run(multi: boolean): { values: number[][]; launches: number } {
  manualSeed(3);
  const sizes = Array.from({ length: 30 }, (_, i) => 1 + ((i * 37) % 300));
  const params: Tensor[] = sizes.map((n, i) => randn([n], { device: 'cuda:0', requiresGrad: true }).to(i % 3 === 0 ? 'f32' : 'bf16').detach().requiresGrad_(true));
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.1 });
  const saved = native.cuda.adamMulti;
  if (!multi) native.cuda.adamMulti = undefined;
  let launches = 0;
  try {
    for (let step = 0; step < 3; step++) {
      params.forEach((p, i) => {
        p.grad = i === 7 && step === 1 ? null : randn([...p.shape], { device: 'cuda:0' }).to(p.dtype);
      });
      const { entries } = cudaCensus(() => opt.step());
      const adam = entries.filter((e) => /optim\.cu|adam_multi\.cu/.test(e.site));
      if (step === 2) {
        launches = adam.reduce((n, e) => n + e.count, 0);
        if (multi) console.log(`  AdamW step over 30 parameters: ${launches} launches\n${formatCensus(adam)}`);
      }
    }
  } finally {
    native.cuda.adamMulti = saved;
  }
  const state = opt.stateDict() as unknown as { state: Record<string, Record<string, Tensor>> };
  const values = params.map((p) => Array.from(p.to('f32').toArray() as Float32Array));
  for (const s of Object.values(state.state)) for (const t of Object.values(s)) if (t && typeof t === 'object' && 'toArray' in t) values.push(Array.from(t.to('f32').toArray() as Float32Array));
  return { values, launches };
}

if (!cudaIsAvailable()) {
  test('AdamW over many parameters per launch', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_adam_multi: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('bit for bit the per-parameter kernel, with ceil(n / 24) launches per group of dtypes and step', () => {
    const single = run(false);
    const multi = run(true);
    assert.is(multi.values.length, single.values.length);
    multi.values.forEach((v, i) => assert.equal(v, single.values[i], `tensor ${i}`));
    assert.is(single.launches, 30);
    // f32 (10 params), bf16 at step 3 (19) and the bf16 parameter that skipped a step (its own step number).
    assert.is(multi.launches, 3);
  });
}

test.run();
