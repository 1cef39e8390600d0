/**
 * NCCL all-reduce bandwidth through meshtrain's nccl backend, f32 in place, 1 KiB to 1 GiB.
 * algbw = bytes / time; busbw = algbw x 2(n-1)/n (nccl-tests' definition: what each link
 * carries in a ring). Run alone it is a world of one rank: NCCL only touches local memory, busbw
 * is 0 by definition, and algbw measures the local path and the per-call overhead, not a network;
 * under `meshtrain --num_gpus N --backend nccl` it measures N GPUs (rank 0 prints). Host clock
 * around back-to-back calls with a device synchronization at both ends.
 *   node --import tsx bench/gpu_nccl.ts [--quick]
 */
import { cudaSynchronize, destroyDistributed, getDevice, initDistributed, ncclUnavailableReason, zeros } from '../src/index.ts';

const quick = process.argv.includes('--quick');
const why = ncclUnavailableReason();
if (why) {
  console.log(`bench/gpu_nccl: skipped: ${why}`);
  process.exit(0);
}
const world = await initDistributed({ backend: 'nccl' });
const dev = getDevice();
const n = world.size;
const sizes = quick ? [1 << 10, 1 << 16, 1 << 22, 1 << 28] : Array.from({ length: 11 }, (_, k) => 1024 * 4 ** k);
const say = (s: string) => {
  if (world.rank === 0) console.log(s);
};
say(`bench/gpu_nccl: all-reduce (sum, f32, in place) on ${n} rank(s), ${dev}${n === 1 ? ' — one rank: the local path only (no link is used; busbw is 0 by definition)' : ''}`);
say(`${'bytes'.padStart(12)} ${'us/call'.padStart(10)} ${'algbw GB/s'.padStart(11)} ${'busbw GB/s'.padStart(11)}`);
let last = '';
for (const bytes of sizes) {
  const t = zeros([bytes / 4], { device: dev, tag: 'comm' });
  for (let w = 0; w < 3; w++) world.allReduce(t, 'sum');
  cudaSynchronize(dev);
  world.barrier();
  // Enough calls for ~0.2 s (fewer when quick), at least 5.
  const probe = performance.now();
  world.allReduce(t, 'sum');
  cudaSynchronize(dev);
  const once = Math.max(1e-3, performance.now() - probe);
  const iters = Math.max(5, Math.min(1000, Math.round((quick ? 50 : 200) / once)));
  world.barrier();
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) world.allReduce(t, 'sum');
  cudaSynchronize(dev);
  const sec = (performance.now() - t0) / 1000 / iters;
  t.dispose();
  const algbw = bytes / sec / 1e9;
  const busbw = (algbw * 2 * (n - 1)) / n;
  say(`${String(bytes).padStart(12)} ${(sec * 1e6).toFixed(1).padStart(10)} ${algbw.toFixed(2).padStart(11)} ${busbw.toFixed(2).padStart(11)}`);
  last = `all-reduce ${bytes >= 1 << 20 ? `${bytes / (1 << 20)} MiB` : `${bytes / 1024} KiB`} on ${n} rank(s): algbw ${algbw.toFixed(1)} GB/s, busbw ${busbw.toFixed(1)} GB/s${n === 1 ? ' (local path)' : ''}`;
}
say(last);
await destroyDistributed();
