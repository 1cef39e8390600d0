/**
 * The launch census (src/tensor/census.ts): it counts what a call queues, by site, and one bf16
 * GPT training step through the engine (bench/gpu_census_gpt.ts: 2 layers, ZeRO 0, AdamW; here T 16
 * and width 64 in one head, whose census equals the bench's d 128, T 64 site for site and count for
 * count) stays within the device-op budget reached by removing avoidable launches, so a change
 * that adds launches to the step fails here (raise the budget only for launches that must be
 * there, and say why in docs/gpu.md's table). Counts are structural: the same on a GPU and on the
 * emulated device. Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptStepCensus } from '../../bench/gpu_census_gpt.ts';
import {
  censusTotals, cudaCensus, cudaIsAvailable, destroyDistributed, formatCensus, initDistributed, matmul, native, noGrad, randn,
} from '../../src/index.ts';

/** Device ops (kernels, library calls, copies, memsets) of the step at 2 layers, copies to and from the host (each waits for the device). */
// 95: the device-decided optimizer step (src/engine/decided_step.ts) adds its decision kernel and one scalar-slot write per
// many-tensor optimizer call, and trades the overflow check's blocking read for a read-later copy (docs/gpu.md, the census section).
// 91: the two residual adds per layer are in c_proj's products (docs/gpu.md, "Linear + residual").
// 84 (86 before): GELU's backward is in c_proj's input-gradient product, cuBLASLt's DGELU (docs/gpu.md, "Linear + GELU").
// 80: layer norm adds x's gradient into the residual's held one, 2 element-wise adds per layer fewer (docs/gpu.md, "Linear + residual").
const BUDGET = { deviceOps: 80, toHost: 1, fromHost: 0 };

if (!cudaIsAvailable()) {
  test('launch census', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_census: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test.before(async () => {
    await initDistributed({ timeoutMs: 30_000 });
  });
  test.after(async () => {
    await destroyDistributed();
  });

  test('counts a matmul and a cast by site, with their bytes; nothing once stopped', () => {
    noGrad(() => {
      const a = randn([8, 16], { device: 'cuda:0' }).to('bf16');
      const b = randn([16, 4], { device: 'cuda:0' }).to('bf16');
      const { result, entries } = cudaCensus(() => matmul(a, b).to('f32'));
      const mm = entries.filter((e) => e.kind === 'library' && e.name === 'cublasLtMatmul bf16');
      assert.is(mm.length, 1, formatCensus(entries));
      assert.is(mm[0].count, 1);
      assert.is(mm[0].bytes, 2 * (8 * 16 + 16 * 4 + 8 * 4));
      const cast = entries.filter((e) => e.kind === 'kernel' && e.label === 'bf16->f32');
      assert.is(cast.length, 1, formatCensus(entries));
      assert.is(cast[0].bytes, 32 * (2 + 4));
      assert.match(cast[0].site, /^cuda\/copy\.cu:\d+$/);
      assert.is(censusTotals(entries).deviceOps, 2, formatCensus(entries));
      result.dispose();
      const idle = cudaCensus(() => 0).entries;
      matmul(a, b).dispose();
      assert.equal(idle, []);
      assert.throws(() => native.cudaCensus('go'), /cudaCensus: unknown command 'go'/);
      a.dispose();
      b.dispose();
    });
  });

  test(`one bf16 GPT step (2 layers, engine, ZeRO 0) queues at most ${BUDGET.deviceOps} device ops`, async () => {
    // Head dim 64 as the bench's d 128 in two heads; a fraction of the emulated threads (checked equal entry for entry when chosen).
    const entries = await gptStepCensus({ layers: 2, seq: 16, nEmbd: 64, nHead: 1 });
    const t = censusTotals(entries);
    const toHost = entries.filter((e) => e.kind === 'memcpy' && /to host/.test(e.name)).reduce((n, e) => n + e.count, 0);
    console.log(`  GPT step census: ${t.deviceOps} device ops (budget ${BUDGET.deviceOps}): kernels ${t.kernel}, library ${t.library}, memcpy ${t.memcpy}, memset ${t.memset}; copies to the host ${toHost}`);
    assert.ok(t.deviceOps <= BUDGET.deviceOps, `the step queues ${t.deviceOps} device ops, over the budget of ${BUDGET.deviceOps}:\n${formatCensus(entries)}`);
    assert.ok(toHost <= BUDGET.toHost, `the step copies to the host ${toHost} times, over ${BUDGET.toHost}:\n${formatCensus(entries)}`);
    const fromHost = entries.filter((e) => e.kind === 'memcpy' && /^host to device/.test(e.name)).reduce((n, e) => n + e.count, 0);
    assert.ok(fromHost <= BUDGET.fromHost, `the step copies from the host ${fromHost} times (GPT's positions?):\n${formatCensus(entries)}`);
    assert.is(t.malloc, 0, `the third step reaches cudaMalloc:\n${formatCensus(entries)}`);
  });
}

test.run();
