/**
 * The emulated device's timing-only mode (MESHTRAIN_CUDA_EMU_SKIP_WORK=1; cuda_emu.test.ts runs
 * this file so): a bf16 GPT engine step queues exactly the device ops, by site, that it queues
 * when the kernels run (so bench/gpu_host_floor.ts times the real host path), the host reads
 * zeros, and the launch, pointer and reference-cuBLASLt checks still fire.
 * Anywhere else (a real GPU, the emulator running kernels, no device): one SKIP line.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { gptStepCensus } from '../../bench/gpu_census_gpt.ts';
import { add, type CensusEntry, cudaIsAvailable, destroyDistributed, initDistributed, native, noGrad, tensor } from '../../src/index.ts';

interface EmuChecks {
  run(name: string): string;
  cublas(): { heuristic: number; matmul: number; smallLd: number; wrongAttributeSize: number; algoReused: number; misaligned: number };
}
const checks = (native as unknown as { cudaEmuChecks?: EmuChecks }).cudaEmuChecks;
const skip = (process.env.MESHTRAIN_CUDA_EMU_SKIP_WORK ?? '0') !== '0' && process.env.MESHTRAIN_CUDA_EMU_SKIP_WORK !== '';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

if (!checks || !skip || !cudaIsAvailable()) {
  test('emulated device skip mode', () => {
    console.log('SKIP test/unit/cuda_emu_skip: needs the emulation build with MESHTRAIN_CUDA_EMU_SKIP_WORK=1 (cuda_emu.test.ts runs it so)');
  });
} else {
  test.before(async () => {
    await initDistributed({ timeoutMs: 30_000 });
  });
  test.after(async () => {
    await destroyDistributed();
  });

  test('the host reads zeros from the device (values there are garbage)', () => {
    noGrad(() => {
      const a = tensor([1, 2, 3, 4], { device: 'cuda:0' });
      const b = add(a, a);
      assert.equal(Array.from(a.toArray() as Float32Array), [0, 0, 0, 0]);
      assert.equal(Array.from(b.toArray() as Float32Array), [0, 0, 0, 0]);
      a.dispose();
      b.dispose();
    });
  });

  test('launch, pointer and cuBLASLt checks still fire', () => {
    assert.match(checks.run('hostPointer'), /cudaErrorIllegalAddress.*is not device memory/);
    assert.match(checks.run('freedWrite'), /cudaErrorIllegalAddress.*points into a freed \(cached\) block/);
    assert.match(checks.run('badConfig'), /cudaErrorInvalidConfiguration.*block \(2048,1,1\)/);
    const r = checks.cublas();
    assert.is(r.heuristic, 0);
    assert.is(r.matmul, 0);
    const invalid = 7; // CUBLAS_STATUS_INVALID_VALUE
    assert.equal([r.smallLd, r.wrongAttributeSize, r.algoReused, r.misaligned], [invalid, invalid, invalid, invalid]);
  });

  test('a GPT engine step queues the same device ops as with the kernels running', async () => {
    const key = (e: CensusEntry) => `${e.kind} ${e.name} ${e.site} ${e.label ?? ''}`;
    const byKey = (es: CensusEntry[]) => new Map(es.filter((e) => e.kind !== 'note').map((e) => [key(e), [e.count, e.bytes]]));
    const dir = mkdtempSync(path.join(tmpdir(), 'mt-skip-'));
    try {
      const file = path.join(dir, 'census.json');
      // The same census with every kernel run: a child without skip mode.
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/gpu_census.ts', '--json', file], {
        cwd: root,
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, MESHTRAIN_CUDA_EMU_SKIP_WORK: '0', OMP_NUM_THREADS: '1' },
      });
      assert.is(r.status, 0, `bench/gpu_census.ts: ${r.stdout}${r.stderr}`);
      const ran = JSON.parse(readFileSync(file, 'utf8')).two as CensusEntry[];
      const skipped = await gptStepCensus({ layers: 2 });
      assert.equal(byKey(skipped), byKey(ran));
      assert.ok(ran.length > 20, `census of ${ran.length} sites`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
