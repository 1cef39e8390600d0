/**
 * Where the host time of an eager GPT-2 124M bf16 step goes: V8's sampling profiler around the
 * timed steps only (not the model build), self time summed by function and by source file, with
 * native calls (the addon, N-API, and the driver or the emulator under them) in one row per JS caller.
 * On a GPU it profiles the real host path (driver included); without one it reruns itself on the
 * emulated device in skip mode (docs/host_floor.md), like bench/gpu_host_floor.ts. `--perf` runs
 * `perf record -g` over the same steps instead (native symbols; node --perf-basic-prof for JS names).
 *
 *   npx tsx bench/host_profile.ts [--steps 100] [--layers 12] [--top 40] [--out prof.cpuprofile] [--gc-only | --alloc | --perf]
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { cudaIsAvailable, cudaSynchronize, destroyDistributed, initDistributed } from '../src/index.ts';
import { emulated, rerunEmulated, skipMode } from './emu_rerun.ts';
import { gptEngineStep } from './gpu_census_gpt.ts';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

async function main(): Promise<void> {
  const steps = arg('--steps', 100);
  const layers = arg('--layers', 12);
  const top = arg('--top', 40);
  await initDistributed({ timeoutMs: 30_000 });
  const s = await gptEngineStep({ size: '124M', layers, nEmbd: 768, nHead: 12, seq: 1024, batch: 1, vocab: 50257 });
  try {
    for (let k = 0; k < 10; k++) s.step();
    cudaSynchronize(s.device);
    const gc = await collections(s, steps);
    console.log(
      `garbage collections per 100 steps (no profiler; load-independent, a measure of what the step allocates): ` +
        `minor ${((gc.minor / steps) * 100).toFixed(0)}, major ${((gc.major / steps) * 100).toFixed(0)}`,
    );
    if (process.argv.includes('--gc-only')) return;
    if (process.argv.includes('--perf')) return await perfSteps(s, steps);
    if (process.argv.includes('--alloc')) return await allocSites(s, steps, top);
    const session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 50 });
    await session.post('Profiler.start');
    const t0 = performance.now();
    for (let k = 0; k < steps; k++) s.step();
    const ms = (performance.now() - t0) / steps;
    const { profile } = (await session.post('Profiler.stop')) as { profile: { nodes: Node[]; samples: number[]; timeDeltas: number[] } };
    const o = process.argv.indexOf('--out');
    if (o >= 0) writeFileSync(process.argv[o + 1], JSON.stringify(profile));
    report(profile, steps, ms, top);
  } finally {
    s.dispose();
    await destroyDistributed();
  }
}

/** Minor (scavenge) and major collections over `steps` steps: the young generation's size is fixed, so minor ones count allocation. */
async function collections(s: { step(): void }, steps: number): Promise<{ minor: number; major: number }> {
  const n = { minor: 0, major: 0 };
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MINOR) n.minor++;
      else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) n.major++;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  for (let k = 0; k < steps; k++) s.step();
  await new Promise((r) => setTimeout(r, 100)); // entries arrive on the event loop
  obs.disconnect();
  return n;
}

interface AllocNode {
  callFrame: { functionName: string; url: string };
  selfSize: number;
  children: AllocNode[];
}

/** `--alloc`: V8's sampling heap profiler over the steps: bytes allocated per step by allocating function (what feeds GC). */
async function allocSites(s: { step(): void }, steps: number, top: number): Promise<void> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  for (let k = 0; k < steps; k++) s.step();
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as { profile: { head: AllocNode } };
  const by = new Map<string, number>();
  let total = 0;
  const walk = (n: AllocNode): void => {
    const f = n.callFrame;
    const key = `${f.functionName || '(anon)'} ${short(f.url)}`;
    by.set(key, (by.get(key) ?? 0) + n.selfSize);
    total += n.selfSize;
    for (const c of n.children) walk(c);
  };
  walk(profile.head);
  console.log(`sampled allocation: ${(total / steps / 1024).toFixed(0)} KiB per step (sampled every 512 bytes, collected objects included)`);
  for (const [k, b] of [...by].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((b / total) * 100).toFixed(1).padStart(5)}%  ${(b / steps / 1024).toFixed(1).padStart(7)} KiB/step  ${k}`);
  }
}

/** `--perf`: `perf record -g` on this process around the timed steps only (run node with --perf-basic-prof for JS names). */
async function perfSteps(s: { step(): void }, steps: number): Promise<void> {
  const out = `/tmp/host_profile.${process.pid}.perf`;
  const perf = spawn('perf', ['record', '-F', '2000', '-g', '-p', String(process.pid), '-o', out], { stdio: 'inherit' });
  await new Promise((r) => setTimeout(r, 1500));
  const t0 = performance.now();
  for (let k = 0; k < steps; k++) s.step();
  console.log(`wall ${((performance.now() - t0) / steps).toFixed(2)} ms/step under perf; perf data: ${out}`);
  perf.kill('SIGINT');
  await new Promise((r) => perf.on('exit', r));
}

function report(p: { nodes: Node[]; samples: number[]; timeDeltas: number[] }, steps: number, ms: number, top: number): void {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i + 1] ?? 0));
  const byFn = new Map<string, number>();
  const byFile = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const n = byId.get(id) as Node;
    total += us;
    const f = n.callFrame;
    // A native frame (url '') is charged to its nearest JS caller, labelled as native work.
    let label: string;
    let file: string;
    if (!f.url && !f.functionName.startsWith('(')) {
      let q = parent.get(id);
      while (q !== undefined && !(byId.get(q) as Node).callFrame.url) q = parent.get(q);
      const c = q === undefined ? undefined : (byId.get(q) as Node).callFrame;
      label = `[native call] <- ${c ? `${c.functionName} ${short(c.url)}:${c.lineNumber + 1}` : '?'}`;
      file = '(native)';
    } else {
      label = `${f.functionName || '(anon)'} ${short(f.url)}:${f.lineNumber + 1}`;
      file = f.url ? short(f.url) : f.functionName;
    }
    byFn.set(label, (byFn.get(label) ?? 0) + us);
    byFile.set(file, (byFile.get(file) ?? 0) + us);
  }
  const line = (m: Map<string, number>, n: number) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, us]) => `${((us / total) * 100).toFixed(1).padStart(5)}%  ${(us / steps).toFixed(0).padStart(5)} us/step  ${k}`).join('\n');
  console.log(`wall ${ms.toFixed(2)} ms/step under the profiler, ${steps} steps, ${(total / 1e3 / steps).toFixed(2)} ms sampled per step`);
  console.log('by file:');
  console.log(line(byFile, 30));
  console.log('by function (self):');
  console.log(line(byFn, top));
  // The last line is gpu_check.sh's key for this step.
  const pct = (k: string) => `${(((byFile.get(k) ?? 0) / total) * 100).toFixed(0)}%`;
  const ts = [...byFile].filter(([k]) => !k.startsWith('(')).sort((a, b) => b[1] - a[1]).slice(0, 3);
  console.log(
    `host profile: ${(total / 1e3 / steps).toFixed(2)} ms/step sampled; native calls ${pct('(native)')}, GC ${pct('(garbage collector)')}, ` +
      `top TS: ${ts.map(([k, us]) => `${k.replace(/^src\//, '')} ${((us / total) * 100).toFixed(0)}%`).join(', ')}`,
  );
}

const short = (url: string) => url.replace(/^file:\/\//, '').replace(/^.*\/work\/main\//, '');

if (cudaIsAvailable() && (!emulated() || skipMode())) await main();
else if (!rerunEmulated()) console.log('skipped: no CUDA device (real or emulated: build-emu)');
