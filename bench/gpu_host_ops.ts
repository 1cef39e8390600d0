/**
 * Host cost per call of the pieces of a device op, each as a ratio to the floor: an empty kernel
 * launched in a C++ loop (cudaLaunchKernel alone). Times are host time only (steady clock), with
 * the compute stream idle at the start of each round and fewer calls per round than the launch
 * queue holds, so the device's pace does not show. Median of rounds.
 *
 *   napi no-op            the cheapest N-API call from JS (native.cuda.hostBench.noop)
 *   add cpu / add cuda:0  add([1], [1]) through the public API, result disposed: our whole op path
 *   add, binding alone    native.cuda.binaryFlat into a kept output: N-API, operand checks, launcher
 *   launch (C++ loop)     MT_LAUNCH of an empty kernel: the floor
 *   launch + check        the same plus cudaGetLastError, as every launcher does
 *   eventRecord, streamWaitEvent, streamWaitStream (ours), eventCreate+Destroy, funcSetAttribute, getDevice, useDevice
 *   (ours, cached per thread), getLastError, streamQuery: single runtime calls in C++ loops
 *   matmul 64^3 bf16      ours (matmul(), result disposed) vs cublasLtMatmul in a C++ loop
 *
 *   npx tsx bench/gpu_host_ops.ts [--smoke] [--json FILE]
 * On the emulated device it runs too (the numbers are the emulator's, meaningless: kernels run on
 * the CPU); that checks the plumbing (scripts/gpu_check.sh, MT_EMU=1). --smoke: few calls.
 */
import { writeFileSync } from 'node:fs';
import { add, cudaIsAvailable, cudaSynchronize, matmul, native, noGrad, randn, type Tensor, tidy } from '../src/index.ts';
import { Binary } from '../src/ops/kernels.ts';
import { kernelsOn } from '../src/tensor/backend.ts';
import { dtypeCode } from '../src/tensor/dtype.ts';
import { median } from './timing.ts';

interface HostBench {
  noop(): void;
  loop(dev: number, name: string, n: number): number;
  cublasLtLoop(dtype: number, a: number, b: number, out: number, m: number, n: number, k: number, calls: number): number;
}
const hostBench = (native as unknown as { cuda?: { hostBench?: HostBench } }).cuda?.hostBench;

const smoke = process.argv.includes('--smoke');
const ROUNDS = smoke ? 3 : 9;
/** Calls per timed round: below the launch queue's depth for device calls. */
const CALLS = smoke ? 20 : 400;
const DEV = 'cuda:0';

/** µs per call: median over rounds of `calls` calls timed by `round` (which returns seconds). */
function perCall(calls: number, round: () => number): number {
  round(); // warm-up: first-use costs (kernel loading, plans) stay out
  return (median(Array.from({ length: ROUNDS }, round)) / calls) * 1e6;
}

/** Seconds for `calls` runs of fn from JS, the device synchronized before and after (after: untimed). */
function jsRound(calls: number, fn: () => void, sync: boolean): number {
  if (sync) cudaSynchronize(DEV);
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) fn();
  const s = (performance.now() - t0) / 1e3;
  if (sync) cudaSynchronize(DEV);
  return s;
}

function main(hb: HostBench): void {
  const rows: { name: string; us: number }[] = [];
  const loop = (name: string) => perCall(CALLS, () => hb.loop(0, name, CALLS));
  const floor = loop('launch');
  rows.push({ name: 'napi no-op (JS loop)', us: perCall(CALLS * 10, () => jsRound(CALLS * 10, () => hb.noop(), false)) });
  const [ac, bc] = noGrad(() => [randn([1]), randn([1])]);
  const [ag, bg] = noGrad(() => [ac.to(DEV), bc.to(DEV)]);
  const addOnce = (a: Tensor, b: Tensor) => () => noGrad(() => add(a, b).dispose());
  rows.push({ name: 'add [1] on cpu (public API)', us: perCall(CALLS, () => jsRound(CALLS, addOnce(ac, bc), false)) });
  rows.push({ name: 'add [1] on cuda:0 (public API)', us: perCall(CALLS, () => jsRound(CALLS, addOnce(ag, bg), true)) });
  // The same add through its binding alone (output made once): the public API's share is the difference.
  const og = noGrad(() => ag.add(bg));
  const f32 = dtypeCode('f32');
  const kern = kernelsOn(DEV);
  const bindingOnce = () => kern.binaryFlat(Binary.add, f32, ag.id, ag.offset, bg.id, bg.offset, og.id, 0, 1);
  rows.push({ name: 'add [1] on cuda:0, binding alone', us: perCall(CALLS, () => jsRound(CALLS, bindingOnce, true)) });
  og.dispose();
  rows.push({ name: 'launch, empty kernel (C++ loop)', us: floor });
  for (const [label, name] of [
    ['launch + cudaGetLastError', 'launchChecked'],
    ['cudaEventRecord', 'eventRecord'],
    ['cudaStreamWaitEvent', 'streamWaitEvent'],
    ['streamWaitStream (ours: record + wait)', 'streamWaitStream'],
    ['cudaEventCreate + Destroy', 'eventCreateDestroy'],
    ['cudaFuncSetAttribute', 'funcSetAttribute'],
    ['cudaGetDevice', 'getDevice'],
    ['cudaUseDevice (ours, cached)', 'useDevice'],
    ['cudaGetLastError', 'getLastError'],
    ['cudaStreamQuery', 'streamQuery'],
  ] as const) {
    rows.push({ name: label, us: loop(name) });
  }
  // Matmul at 64^3 bf16: tiny, so host-bound on both sides.
  const n = 64;
  const [a, b, out] = noGrad(() => tidy(() => [randn([n, n]).to('bf16').to(DEV), randn([n, n]).to('bf16').to(DEV), randn([n, n]).to('bf16').to(DEV)]));
  const matmulCalls = smoke ? 5 : CALLS;
  const ours = perCall(matmulCalls, () => jsRound(matmulCalls, () => noGrad(() => matmul(a, b).dispose()), true));
  const peer = perCall(matmulCalls, () => hb.cublasLtLoop(dtypeCode('bf16'), a.id, b.id, out.id, n, n, n, matmulCalls));
  rows.push({ name: `matmul ${n}^3 bf16, ours (public API)`, us: ours });
  rows.push({ name: `cublasLtMatmul ${n}^3 bf16 (C++ loop)`, us: peer });
  for (const t of [ac, bc, ag, bg, a, b, out]) t.dispose();

  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(`host µs per call (median of ${ROUNDS} rounds of ${CALLS}; host time, stream idle at each round's start)`);
  console.log(`${'call'.padEnd(w)}  ${'µs'.padStart(8)}  ${'x floor'.padStart(8)}`);
  for (const r of rows) console.log(`${r.name.padEnd(w)}  ${r.us.toFixed(3).padStart(8)}  ${(r.us / floor).toFixed(2).padStart(8)}`);
  const us = (name: string) => rows.find((r) => r.name.startsWith(name))?.us ?? Number.NaN;
  // The key line (gpu_check.sh's summary).
  console.log(
    `launch floor ${floor.toFixed(2)} µs; add cuda:0 ${us('add [1] on cuda').toFixed(2)} µs (${(us('add [1] on cuda') / floor).toFixed(1)}x); ` +
      `matmul 64 ours ${ours.toFixed(2)} vs cuBLASLt ${peer.toFixed(2)} µs (${(ours / peer).toFixed(2)}x)`,
  );
  const j = process.argv.indexOf('--json');
  if (j >= 0) writeFileSync(process.argv[j + 1], JSON.stringify({ floorUs: floor, rounds: ROUNDS, calls: CALLS, rows }, null, 1));
}

if (!cudaIsAvailable()) console.log('skipped: no CUDA device (real or emulated)');
else if (!hostBench) console.log('skipped: this build has no native.cuda.hostBench (rebuild the addon)');
else main(hostBench);
