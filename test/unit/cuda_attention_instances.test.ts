/**
 * bench/attention_instances.ts, the pass scripts/sanitize_attention.sh runs under compute-sanitizer:
 * its twelve cases reach all 22 fused attention kernel instances (fa2 and WMMA, forward and
 * backward, bf16/f16, head dims 32/64/128), each case's launch census shows the family it asked
 * for, and (where the kernels run) fa2 matches WMMA within 2e-2 on output and gradients. On the
 * emulated device in CI the kernels are skipped (MESHTRAIN_CUDA_EMU_SKIP_WORK=1: census only,
 * well under a second); on a GPU it runs in full. Without a usable device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { allInstances, CASES, caseName, runCase } from '../../bench/attention_instances.ts';
import { cudaIsAvailable, native } from '../../src/index.ts';

test('the cases cover every instance, named once each', () => {
  const names = CASES.map(caseName);
  assert.is(new Set(names).size, names.length, `duplicate cases: ${names}`);
  assert.is(allInstances().length, 22);
});

if (!cudaIsAvailable()) {
  test('attention instances on cuda:0', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_attention_instances: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('every attention kernel instance runs, on the family asked for', () => {
    const values = process.env.MESHTRAIN_CUDA_EMU_SKIP_WORK !== '1';
    const covered = new Set<string>();
    const started = performance.now();
    for (const [i, c] of CASES.entries()) {
      const r = runCase(c, i, values);
      assert.equal(r.errors, [], `${r.name}: ${r.errors.join('; ')}`);
      for (const x of r.instances) covered.add(x);
    }
    assert.equal([...covered].sort(), allInstances());
    console.log(`  ${CASES.length} cases, ${covered.size} instances${values ? '' : ' (census only)'} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  });
}

test.run();
