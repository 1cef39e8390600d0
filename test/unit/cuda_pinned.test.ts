/**
 * Pinned host memory (src/tensor/pinned.ts, native/cuda/pinned_pool.cc). Always: pinnedEmpty gives
 * CPU tensors counted under their tag ('cpu', or 'cpu-offload' with offloadPool), zeroed on
 * request, and ordinary memory where pinning is impossible. With a device: the blocks are pinned
 * and reused from the pool's cache, and a host-to-device copy from a block that is freed and
 * reused at once still delivers the values it was queued with (the pool waits for the copy),
 * 64 MiB, compared exactly. Without a device the device half prints one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable, cudaSynchronize, isPinned, memoryStats, native, pinnedEmpty, pinnedPoolStats, Tensor } from '../../src/index.ts';
import { fill } from '../../src/ops/kernels.ts';
import { stageBytes } from '../../src/tensor/pinned.ts';

test('pinnedEmpty: a CPU tensor under its tag, in the offload pool on request, zeroed on request', () => {
  const before = memoryStats().cpu.comm.current;
  const t = pinnedEmpty([1000], { dtype: 'bf16', tag: 'comm', zero: true });
  assert.is(t.device, 'cpu');
  assert.is(t.dtype, 'bf16');
  assert.is(memoryStats().cpu.comm.current - before, 2000);
  assert.ok((t.toArray() as Float32Array).every((v) => v === 0));
  fill(t, 1.5);
  assert.ok((t.toArray() as Float32Array).every((v) => v === 1.5));
  t.dispose();
  assert.is(memoryStats().cpu.comm.current, before);
  const o = pinnedEmpty([10], { tag: 'optim', offloadPool: true });
  assert.is(memoryStats()['cpu-offload'].optim.current >= 40, true);
  assert.is(isPinned(o), cudaIsAvailable());
  o.dispose();
});

if (!cudaIsAvailable()) {
  test('pinned pool on a device', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_pinned (device half): no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('pinned pool: blocks are pinned and reused from the cache', () => {
    const a = pinnedEmpty([1 << 20]);
    assert.ok(isPinned(a));
    a.dispose();
    const hits = pinnedPoolStats().hits;
    const b = pinnedEmpty([1 << 20]);
    assert.is(pinnedPoolStats().hits, hits + 1, 'the freed block came back from the cache');
    b.dispose();
  });

  test('pinned pool: a block freed right after queuing a host-to-device copy is reused only once the copy has read it', () => {
    const n = 16 << 20;  // 64 MiB of f32: long enough for the copy to still be in flight
    const src = pinnedEmpty([n]);
    fill(src, 3.25);
    const dev = Tensor.empty([n], { device: 'cuda:0' });
    stageBytes(src.id, 0, dev.id, 0, n * 4);   // queued on the communication stream
    src.dispose();
    const again = pinnedEmpty([n]);            // the same block, handed out after its copy finished
    fill(again, -7);
    cudaSynchronize('cuda:0');
    const back = dev.to('cpu').toArray() as Float32Array;
    let bad = 0;
    for (let i = 0; i < n; i++) if (back[i] !== 3.25) bad++;
    assert.is(bad, 0, `${bad} element(s) carry the reused block's values`);
    again.dispose();
    dev.dispose();
  });
}

test.run();
