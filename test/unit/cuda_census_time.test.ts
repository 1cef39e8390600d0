/**
 * The launch census's device-time mode (cudaCensus(fn, { timing: true }); native/cuda/census_timing.cc):
 * the same counts as without timing, every device op on the compute stream timed once (deviceMs
 * finite, >= 0), one wait for the device at the end and none without timing, and the table that
 * bench/gpu_profile.ts prints. On the emulated device the times are the CPU's running our kernels
 * (not GPU times); on a GPU scripts/gpu_check.sh runs this too. Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptEngineStep } from '../../bench/gpu_census_gpt.ts';
import {
  type CensusEntry, censusDeviceTotals, censusTotals, cudaCensus, cudaIsAvailable, cudaSyncCount, cudaSynchronize, destroyDistributed,
  formatCensus, formatCensusTime, initDistributed, matmul, native, noGrad, randn,
} from '../../src/index.ts';

const key = (e: CensusEntry) => `${e.kind}|${e.name}|${e.site}|${e.label}`;
// What a census counts, malloc aside (cache misses depend on what the allocator holds, not on timing).
const counts = (entries: CensusEntry[]) =>
  entries
    .filter((e) => e.kind !== 'malloc')
    .map((e) => `${key(e)} x${e.count}`)
    .sort();
const deviceOp = (e: CensusEntry) => e.kind === 'kernel' || e.kind === 'library' || e.kind === 'memcpy' || e.kind === 'memset';

if (!cudaIsAvailable()) {
  test('timed launch census', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_census_time: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test.before(async () => {
    await initDistributed({ timeoutMs: 30_000 });
  });
  test.after(async () => {
    await destroyDistributed();
  });

  test('a timed matmul and cast: same counts, each op timed once, one wait at the end and none untimed', () => {
    noGrad(() => {
      const a = randn([64, 96], { device: 'cuda:0' }).to('bf16');
      const b = randn([96, 32], { device: 'cuda:0' }).to('bf16');
      cudaSynchronize('cuda:0');
      const run = () => matmul(a, b).to('f32');
      let s0 = cudaSyncCount();
      const plain = cudaCensus(run);
      assert.is(cudaSyncCount() - s0, 0, 'an untimed census waits for nothing');
      assert.ok(plain.entries.every((e) => !('deviceMs' in e) && !('timed' in e)), 'untimed entries carry no times');
      s0 = cudaSyncCount();
      const timed = cudaCensus(run, { timing: true });
      assert.is(cudaSyncCount() - s0, 1, 'a timed census waits once for the device (one device)');
      assert.equal(counts(timed.entries), counts(plain.entries), formatCensus(timed.entries));
      for (const e of timed.entries.filter(deviceOp)) {
        assert.is(e.timed, e.count, `${key(e)} timed ${e.timed} of ${e.count}`);
        assert.ok(Number.isFinite(e.deviceMs) && (e.deviceMs ?? -1) >= 0, `${key(e)}: deviceMs ${e.deviceMs}`);
      }
      const t = censusDeviceTotals(timed.entries);
      assert.is(t.timed, censusTotals(timed.entries).deviceOps);
      assert.is(t.untimed, 0);
      const table = formatCensusTime(timed.entries, { wallMs: 10 });
      assert.match(table, /cublasLtMatmul bf16/);
      assert.match(table, /sum of op times [\d.]+ ms over 2 timed ops \(0 counted, not timed\); step wall 10\.000 ms: gap/);
      assert.throws(() => formatCensusTime(plain.entries), /formatCensusTime: the entries carry no deviceMs/);
      assert.throws(() => native.cudaCensus('start', 'yes'), /cudaCensus\('start', timed\): timed must be a boolean/);
      // 'read' mid-census collects what was timed so far; 'stop' adds only what came after.
      native.cudaCensus('start', true);
      matmul(a, b).dispose();
      const mm = (es: CensusEntry[]) => es.find((x) => x.kind === 'library');
      const mid = mm(native.cudaCensus('read'));
      matmul(a, b).dispose();
      const end = mm(native.cudaCensus('stop'));
      assert.equal([mid?.count, mid?.timed, end?.count, end?.timed], [1, 1, 2, 2]);
      assert.ok((end?.deviceMs ?? 0) >= (mid?.deviceMs ?? 0));
      for (const r of [plain.result, timed.result]) r.dispose();
      a.dispose();
      b.dispose();
    });
  });

  test('a timed GPT engine step (1 layer, bf16): the same census as untimed, all device ops timed', async () => {
    const s = await gptEngineStep({ layers: 1, seq: 16, batch: 1 });
    try {
      s.step(); // the optimizer state is made here; later steps queue the same ops
      cudaSynchronize(s.device);
      const plain = cudaCensus(() => s.step()).entries;
      const timed = cudaCensus(() => s.step(), { timing: true }).entries;
      const again = cudaCensus(() => s.step(), { timing: true }).entries; // the event pool is reused
      assert.equal(counts(timed), counts(plain), `untimed:\n${formatCensus(plain)}\ntimed:\n${formatCensus(timed)}`);
      assert.equal(counts(again), counts(plain));
      const t = censusDeviceTotals(timed);
      console.log(`  GPT step: ${censusTotals(timed).deviceOps} device ops, ${t.timed} timed, ${t.ms.toFixed(2)} ms of op time (emulated: CPU time)`);
      assert.is(t.timed + t.untimed, censusTotals(timed).deviceOps);
      // Staging copies on the communication stream are the only ops counted and not timed.
      for (const e of timed.filter(deviceOp)) if (e.timed !== e.count) assert.match(e.name, /^stage /, key(e));
      assert.ok(t.ms > 0, 'the emulated kernels take CPU time');
    } finally {
      s.dispose();
    }
  });

  test('cudaProfilerRange: true on a GPU, false on the emulated device; unknown commands named', () => {
    const r = native.cudaProfilerRange('start');
    native.cudaProfilerRange('stop');
    assert.is(r, !('cudaEmuChecks' in native), 'true where a CUDA runtime took the call');
    assert.throws(() => native.cudaProfilerRange('go'), /cudaProfilerRange: unknown command 'go'/);
  });
}

test.run();
