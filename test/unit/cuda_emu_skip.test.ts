/**
 * The emulated device's timing-only mode (MESHTRAIN_CUDA_EMU_SKIP_WORK=1; cuda_emu.test.ts runs
 * this file so): a bf16 GPT engine step queues exactly the device ops, by site, that it queues
 * when the kernels run (so bench/gpu_host_floor.ts times the real host path; and bench/gpu_census.ts's
 * larger shape the same counts), the host reads
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
    const child = (args: string[], skipWork: string) =>
      spawnSync(process.execPath, ['--import', 'tsx', ...args], {
        cwd: root,
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, MESHTRAIN_CUDA_EMU_SKIP_WORK: skipWork, OMP_NUM_THREADS: '1' },
      });
    try {
      // The same census with every kernel run: a child without skip mode. Width 64 in one head at
      // T 16 (head dim 64, as the bench's d 128 in two at T 64): the same sites and counts, a
      // fraction of the emulated threads; bytes are compared too, so both sides take this shape.
      const shape = { layers: 2, seq: 16, nEmbd: 64, nHead: 1 };
      const file = path.join(dir, 'census.json');
      const r = child(['test/helpers/gpt_census_child.ts', file, JSON.stringify(shape)], '0');
      assert.is(r.status, 0, `test/helpers/gpt_census_child.ts: ${r.stdout}${r.stderr}`);
      const ran = JSON.parse(readFileSync(file, 'utf8')) as CensusEntry[];
      const skipped = await gptStepCensus(shape);
      assert.equal(byKey(skipped), byKey(ran));
      assert.ok(ran.length > 20, `census of ${ran.length} sites`);
      // bench/gpu_census.ts (the census at the bench's shape, 1 and 2 layers, per layer) runs too, in skip mode: its counts are these.
      const bench = child(['bench/gpu_census.ts', '--json', path.join(dir, 'bench.json')], '1');
      assert.is(bench.status, 0, `bench/gpu_census.ts: ${bench.stdout}${bench.stderr}`);
      const { two } = JSON.parse(readFileSync(path.join(dir, 'bench.json'), 'utf8')) as { two: CensusEntry[] };
      const counts = (es: CensusEntry[]) => new Map([...byKey(es)].map(([k, [count]]) => [k, count]));
      assert.equal(counts(two), counts(ran), 'the bench shape queues what the smaller one does');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
