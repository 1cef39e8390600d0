/**
 * ZeRO-3's parameter stores (offload_param) in one process. The nvme store holds a partition of
 * 1000 elements (f32 and bf16) as a host prefix (max_in_cpu) plus a file:
 * - acquire returns each shard's exact values; read-aheads are used by acquire (hits), a shard read
 *   once stays cached until evicted, at most bufferCount buffers exist, and with every buffer lent
 *   acquire refuses;
 * - the optimizer step (PartitionOptimizer over stepSource) gives bit-identical parameters and
 *   state to the in-memory store, with 1 to 3 buffers, pieces that do not divide the file region,
 *   and nvme optimizer sub-groups that straddle the host/file boundary; caches are dropped by the step;
 * - view/flush: writes through a view reach the file; regions cover the partition;
 * - the options: defaults are DeepSpeed's; bad values name the key; memory: the host prefix and the
 *   buffers under 'cpu-offload' param, nothing under cpu between uses; destroy() deletes the file.
 */
import { existsSync, mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { manualSeed, memoryStats, randn, type Tensor } from '../../src/index.ts';
import * as k from '../../src/ops/kernels.ts';
import { resolveOffload } from '../../src/zero/offload/options.ts';
import { NvmeParamStore } from '../../src/zero/offload/param_nvme.ts';
import { resolveParamOffload } from '../../src/zero/offload/param_options.ts';
import { MemoryParamStore, type ParamStore } from '../../src/zero/offload/param_store.ts';
import { resolveSpec } from '../../src/zero/optimizer.ts';
import { PartitionOptimizer } from '../../src/zero/partition_optimizer.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'mt-param-store-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const N = 1000;
// Shards of a partition: [offset, size], packed.
const SHARDS: [number, number][] = [[0, 100], [100, 250], [350, 50], [400, 300], [700, 300]];
let files = 0;

function initial(dtype: 'f32' | 'bf16'): Tensor {
  manualSeed(7);
  const t = randn([N]).to(dtype);
  t.kept = true;
  return t;
}

function nvme(src: Tensor, cpuNumel: number, bufferCount: number, bufferSize = 300): NvmeParamStore {
  return new NvmeParamStore(src, { cpuNumel, dir, name: `t${files++}`, bufferCount, bufferSize });
}

const values = (t: Tensor) => Array.from(t.to('f32').toArray() as Float32Array);

test('nvme param store: shards read exactly, read-ahead hits, caching and eviction within bufferCount buffers', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    const src = initial(dtype);
    const all = values(src);
    const s = nvme(src, 100, 2);
    assert.is(s.cpuNumel, 100);
    assert.equal(s.regions(), [[0, 100], [100, 900]]);
    for (const [at, len] of SHARDS) {
      const l = s.acquire(at, len);
      assert.equal(values(l.tensor), all.slice(at, at + len), `${dtype} shard [${at}, ${at + len})`);
      l.release();
    }
    assert.is(s.reads.blocking, 4, 'the host shard needs no read');
    // [400, 300] and [700, 300] are cached (the two buffers): no read.
    const again = s.acquire(700, 300);
    again.release();
    assert.is(s.reads.hits, 1);
    // Read ahead two shards: both buffers now hold pending reads; acquire uses them.
    assert.ok(s.prefetch(100, 250) && s.prefetch(350, 50));
    assert.not.ok(s.prefetch(400, 300), 'no free buffer for a third read-ahead');
    assert.is(s.reads.ahead, 2);
    const a = s.acquire(100, 250);
    const b = s.acquire(350, 50);
    assert.is(s.reads.hits, 3);
    assert.equal(values(b.tensor), all.slice(350, 400));
    assert.not.ok(s.hasRoom(), 'both buffers lent');
    assert.throws(() => s.acquire(400, 300), /all 2 swap buffers are lent/);
    a.release();
    b.release();
    assert.ok(s.hasRoom());
    assert.throws(() => s.acquire(100, 301), /offload_param\.buffer_size: a shard of 301 elements does not fit a swap buffer of 300/);
    const pool = memoryStats()['cpu-offload']?.param.current ?? 0;
    const size = dtype === 'f32' ? 4 : 2;
    s.destroy();
    assert.is(pool - (memoryStats()['cpu-offload']?.param.current ?? 0), (100 + 2 * 300) * size, 'host prefix + 2 buffers in the pool, freed');
    assert.not.ok(existsSync(s.file as string), 'destroy() deleted the file');
    src.dispose();
  }
});

test('nvme param store: the optimizer step streams the file bit for bit as memory (buffers 1-3, cpu/file splits, nvme optimizer sub-groups)', () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    for (const optim of ['none', 'nvme'] as const) {
      const spec = resolveSpec({ type: 'AdamW', lr: 1e-2, weightDecay: 0.1 });
      const offload = resolveOffload(optim === 'none' ? undefined : { device: 'nvme', nvmePath: dir, bufferCount: 3 }, 170, 'test');
      const grad = randn([N]).to(dtype);
      const run = (store: ParamStore, src: Tensor) => {
        const opt = new PartitionOptimizer(spec, src, { offload, name: `o${files++}` });
        for (let step = 1; step <= 3; step++) opt.step(store.stepSource(), { dtype, id: grad.id, off: grad.offset }, step);
        const out = store.regions().flatMap(([lo, len]) => {
          const v = store.view(lo, len);
          const x = values(v);
          v.dispose();
          return x;
        });
        const state = values(opt.stateView('expAvgSq', 0, N));
        opt.destroy();
        return { out, state };
      };
      const ref = initial(dtype);
      const mem = new MemoryParamStore('none', ref);
      const want = run(mem, ref);
      for (const [cpuNumel, buffers, bufferSize] of [[0, 1, 300], [100, 2, 300], [350, 3, 128], [1000, 2, 300]] as const) {
        const src = initial(dtype);
        const s = nvme(src, cpuNumel, buffers, bufferSize);
        const pre = s.acquire(SHARDS[2][0], SHARDS[2][1]);   // cached before the step, stale after it
        pre.release();
        const got = run(s, src);
        const what = `${dtype} optim ${optim} host ${cpuNumel} buffers ${buffers}x${bufferSize}`;
        assert.equal(got.out, want.out, `${what}: parameters bit for bit`);
        assert.equal(got.state, want.state, `${what}: state bit for bit`);
        const after = s.acquire(SHARDS[2][0], SHARDS[2][1]);
        assert.equal(values(after.tensor), want.out.slice(350, 400), `${what}: a gather after the step reads the updated values`);
        after.release();
        s.destroy();
        src.dispose();
      }
      mem.destroy();
      grad.dispose();
    }
  }
});

test('nvme param store: view writes reach the file at flush; a truncated file is an error naming it', () => {
  const src = initial('f32');
  const all = values(src);
  const s = nvme(src, 100, 2);
  const v = s.view(400, 300);
  k.fill(v, 0.5);
  v.dispose();
  const mid = s.acquire(400, 300);                 // resident until flush: the view's values
  assert.ok(values(mid.tensor).every((x) => x === 0.5));
  mid.release();
  assert.throws(() => s.view(50, 100), /straddles the host\/file boundary/);
  s.flush();
  const l = s.acquire(400, 300);                   // read from the file
  assert.ok(values(l.tensor).every((x) => x === 0.5));
  l.release();
  const other = s.acquire(700, 300);
  assert.equal(values(other.tensor), all.slice(700, 1000), 'the rest of the file unchanged');
  other.release();
  truncateSync(s.file as string, 10);
  assert.throws(() => s.acquire(100, 250), /the parameter file \S+\.swp has 10 bytes, expected 3600 \(truncated or overwritten\)/);
  s.destroy();
  src.dispose();
});

test('offload_param options: DeepSpeed defaults; bad values name the key', () => {
  assert.equal(resolveParamOffload(undefined, 'x'), { device: 'none', nvmePath: null, bufferCount: 5, bufferSize: 1e8, maxInCpu: 1e9, pinMemory: false });
  assert.equal(resolveParamOffload({ device: 'nvme', nvmePath: '/p', maxInCpu: 0 }, 'x').maxInCpu, 0);
  assert.throws(() => resolveParamOffload({ device: 'nvme' }, 'x'), /x: offloadParam\.nvmePath: a directory is required/);
  assert.throws(() => resolveParamOffload({ device: 'disk' as 'cpu' }, 'x'), /offloadParam\.device must be 'none', 'cpu' or 'nvme', got "disk"/);
  assert.throws(() => resolveParamOffload({ device: 'cpu', bufferCount: 0 }, 'x'), /bufferCount must be a finite number >= 1, got 0/);
  assert.throws(() => resolveParamOffload({ device: 'cpu', bufferSize: 2.5 }, 'x'), /offloadParam\.bufferSize must be an integer/);
  assert.throws(() => resolveParamOffload({ device: 'cpu', bufferSise: 1 } as never, 'x'), /bufferSise/);
});

test.run();
