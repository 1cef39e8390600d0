/**
 * Collective benchmark: all-reduce, reduce-scatter and all-gather bus bandwidth from 4 KiB to
 * 256 MiB on 2 and 4 ranks (shm backend), for tensors in private memory (staged through the
 * communicator's slots) and in the shared arena (read in place), beside this machine's memcpy
 * bandwidth with one thread per core measured in the same run; the ratio is bus bandwidth over
 * memcpy bandwidth (goal: >= 0.8 at 64 MiB on 2 ranks). Then small-message latency.
 * Bus bandwidth follows nccl-tests: size/time x 2(n-1)/n for all-reduce, x (n-1)/n for
 * reduce-scatter and all-gather, where size is the full (unsharded) tensor.
 *   npm run bench:comm        (or: npx tsx bench/comm.ts --quick | --ranks 2,4 | --max 64M)
 */
import os from 'node:os';
import { destroyDistributed, initDistributed, native, type ProcessGroup, type Tensor, tensor, zeros } from '../src/index.ts';
import { runBenchJob } from './launch.ts';
import { median } from './timing.ts';

const COLLECTIVES = ['allReduce', 'reduceScatter', 'allGather'] as const;
type Coll = (typeof COLLECTIVES)[number];
const MODES = ['private', 'arena'] as const;
type Mode = (typeof MODES)[number];

interface Row { coll: Coll; mode: Mode; bytes: number; seconds: number }
interface Latency { what: string; us: number }

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
function parseBytes(s: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(s);
  if (!m) throw new Error(`bad size ${s}`);
  return Number(m[1]) * { '': 1, K: 1024, M: 1 << 20, G: 1 << 30 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
}
const quick = process.argv.includes('--quick');
const maxBytes = parseBytes(arg('--max') ?? (quick ? '64M' : '256M'));
const SIZES: number[] = [];
for (let s = 4096; s <= maxBytes; s *= quick ? 16 : 4) SIZES.push(s);
if (SIZES[SIZES.length - 1] !== maxBytes) SIZES.push(maxBytes);

function human(b: number): string {
  return b >= 1 << 20 ? `${b / (1 << 20)} MiB` : `${b / 1024} KiB`;
}
function busFactor(coll: Coll, n: number): number {
  return coll === 'allReduce' ? (2 * (n - 1)) / n : (n - 1) / n;
}

// ---- worker: one rank --------------------------------------------------------------------

/** Seconds per call of `fn`: barrier, then a timed loop, median over `reps` loops. */
function timeLoop(world: ProcessGroup, fn: () => void, estimate: number, reps: number, budget: number): number {
  // Every rank must run the same number of iterations: agree on the slowest estimate.
  const e = tensor([estimate], { dtype: 'f64' });
  world.allReduce(e, 'max');
  const iters = Math.max(1, Math.min(2000, Math.round(budget / Math.max(e.item(), 1e-7))));
  e.dispose();
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    world.barrier();
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) fn();
    ts.push((performance.now() - t0) / 1000 / iters);
  }
  return median(ts);
}

function buffers(world: ProcessGroup, coll: Coll, bytes: number, mode: Mode): [Tensor, Tensor] {
  const n = world.size;
  const full = Math.floor(bytes / 4 / n) * n;   // f32 elements, a multiple of n for the sharded pair
  const alloc = (len: number) => (mode === 'arena' ? world.sharedEmpty([len]) : zeros([len]));
  if (coll === 'allReduce') {
    const t = alloc(full);
    return [t, t];
  }
  // The big side is the one peers read (reduce-scatter input) or the one written (all-gather output).
  return coll === 'reduceScatter' ? [alloc(full / n), alloc(full)] : [alloc(full), alloc(full / n)];
}

async function worker(): Promise<void> {
  const world = await initDistributed({ arenaBytes: Math.ceil(maxBytes * 1.6) + (16 << 20) });
  const rows: Row[] = [];
  for (const mode of MODES) {
    for (const bytes of SIZES) {
      for (const coll of COLLECTIVES) {
        const [a, b] = buffers(world, coll, bytes, mode);
        const run = coll === 'allReduce' ? () => world.allReduce(a)
          : coll === 'reduceScatter' ? () => world.reduceScatter(a, b)
          : () => world.allGather(a, b);
        run();   // warm-up: maps pages, fills caches
        const t0 = performance.now();
        run();
        const estimate = (performance.now() - t0) / 1000;
        const seconds = timeLoop(world, run, estimate, 3, quick ? 0.05 : 0.12);
        if (world.rank === 0) {
          rows.push({ coll, mode, bytes, seconds });
          process.stderr.write(`  ${world.size} ranks ${mode.padEnd(7)} ${coll.padEnd(13)} ${human(bytes).padStart(8)}: ${(seconds * 1e3).toFixed(3)} ms\n`);
        }
        a.dispose();
        if (b !== a) b.dispose();
      }
    }
  }
  const lat: Latency[] = [];
  const one = zeros([1]);
  const oneShared = world.sharedEmpty([1]);
  lat.push({ what: 'allReduce 4 B', us: 1e6 * timeLoop(world, () => world.allReduce(one), 2e-5, 5, 0.1) });
  lat.push({ what: 'allReduce 4 B (arena)', us: 1e6 * timeLoop(world, () => world.allReduce(oneShared), 2e-5, 5, 0.1) });
  lat.push({ what: 'broadcast 4 B', us: 1e6 * timeLoop(world, () => world.broadcast(one, 0), 2e-5, 5, 0.1) });
  lat.push({ what: 'barrier', us: 1e6 * timeLoop(world, () => world.barrier(), 2e-5, 5, 0.1) });
  lat.push({ what: 'allReduce 4 B async + wait', us: 1e6 * timeLoop(world, () => world.allReduce(one, 'sum', { async: true }).wait(), 2e-5, 5, 0.1) });
  if (world.rank === 0) console.log(`RESULT ${JSON.stringify({ rows, lat })}`);
  one.dispose();
  oneShared.dispose();
  await destroyDistributed();
}

// ---- parent: memcpy peer, one launcher per world size, the table ---------------------------

/** memcpy GB/s per size with one thread per core, best of 3. */
function memcpyPeer(threads: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const bytes of SIZES) {
    const iters = Math.max(1, Math.min(20000, Math.round((0.03 * 10e9) / bytes)));
    let best = 0;
    for (let r = 0; r < 3; r++) best = Math.max(best, bytes / native.benchMemcpy(bytes, threads, iters) / 1e9);
    out.set(bytes, best);
  }
  return out;
}

const runJob = (np: number): Promise<{ rows: Row[]; lat: Latency[] }> => runBenchJob(np, import.meta.url, (d) => d.replace(/^\[rank 0\] /gm, ''));

async function parent(): Promise<void> {
  const cores = os.availableParallelism();
  const ranks = (arg('--ranks') ?? (quick ? '2' : '2,4')).split(',').map(Number);
  console.log(`meshtrain collective benchmark: shm backend, ${cores} cores, f32, medians; memcpy peer with ${cores} threads\n`);
  process.stderr.write('measuring memcpy...\n');
  const before = memcpyPeer(cores);
  const results = new Map<number, { rows: Row[]; lat: Latency[] }>();
  for (const np of ranks) {
    process.stderr.write(`running ${np} ranks...\n`);
    results.set(np, await runJob(np));
  }
  const after = memcpyPeer(cores);
  const peer = new Map(SIZES.map((s) => [s, Math.max(before.get(s)!, after.get(s)!)]));

  const cell = (v: string | number, w = 11) => String(v).padStart(w);
  for (const np of ranks) {
    const { rows, lat } = results.get(np)!;
    for (const coll of COLLECTIVES) {
      console.log(`${coll} on ${np} ranks`);
      console.log(`${cell('size', 10)}${cell('memcpy GB/s', 13)}${MODES.map((m) => `${cell(`${m} ms`)}${cell('busbw GB/s')}${cell('ratio', 7)}`).join('')}`);
      for (const bytes of SIZES) {
        const cols = MODES.map((mode) => {
          const r = rows.find((x) => x.coll === coll && x.mode === mode && x.bytes === bytes)!;
          const bus = (bytes / r.seconds) * busFactor(coll, np) / 1e9;
          return `${cell((r.seconds * 1e3).toFixed(3))}${cell(bus.toFixed(2))}${cell((bus / peer.get(bytes)!).toFixed(2), 7)}`;
        });
        console.log(`${cell(human(bytes), 10)}${cell(peer.get(bytes)!.toFixed(2), 13)}${cols.join('')}`);
      }
      console.log('');
    }
    console.log(`latency on ${np} ranks: ${lat.map((l) => `${l.what} ${l.us.toFixed(1)} us`).join(', ')}\n`);
  }
  const goal = results.get(2)?.rows.find((r) => r.coll === 'allReduce' && r.mode === 'arena' && r.bytes === 64 << 20);
  if (goal) {
    const bus = ((64 << 20) / goal.seconds) / 1e9;
    console.log(`goal: 2-rank all-reduce of 64 MiB (arena) at ${bus.toFixed(2)} GB/s bus bandwidth = ${(bus / peer.get(64 << 20)!).toFixed(2)} x memcpy (target >= 0.8)`);
  }
}

if (process.env.RANK === undefined) await parent();
else await worker();
