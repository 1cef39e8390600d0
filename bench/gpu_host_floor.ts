/**
 * The host floor of a GPT-2 124M bf16 training step: what issuing its ~590 device ops costs the
 * host (forward, loss, backward, AdamW through initialize() at ZeRO 0, as bench/gpu_census_gpt.ts
 * builds it), against the GPU compute time the same step needs at 40% of an H100's bf16 peak.
 *
 * On the emulated device in skip mode (MESHTRAIN_CUDA_EMU_SKIP_WORK=1: launches and library calls
 * are checked and counted but not run) a step's time is its host cost: our TypeScript, the
 * bindings, the launchers and the emulator's argument checks, not a real driver's launch cost
 * (a few µs per cudaLaunchKernel). On a real GPU it prints the wall time per step with the device
 * synchronized, which is max(host, device) and NOT the host floor, plus the host time to issue
 * forward + backward after a synchronization (no host wait inside when it says 0 syncs).
 *
 * Compute per step: FLOPs = tokens · (6·N + 12·L·T·d) (bench/gpu_gpt.ts, gptStepFlops: N all
 * parameters but the position embedding, 12·L·T·d attention's two T×T products over the full
 * square), at batch 8 × 1024 tokens, divided by 40% of 989 TFLOP/s (H100 SXM dense bf16).
 *
 *   npm run bench:host_floor -- [--batch 1] [--steps 10] [--warmup 3] [--layers 12] [--json FILE]
 * Without a device it reruns itself on the emulated build (build-emu, or MESHTRAIN_CUDA_EMU_BUILD)
 * in skip mode. Memory: emulated device memory is host RAM, but skipped kernels never touch it;
 * at batch 1 the process stays near 2 GiB resident (the CPU model and the copies to the device).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import {
  censusTotals, cudaCensus, cudaDeviceProperties, cudaIsAvailable, cudaSyncCount, cudaSynchronize, destroyDistributed, initDistributed, noGrad, tensor,
} from '../src/index.ts';
import { emulated, rerunEmulated, skipMode } from './emu_rerun.ts';
import { type GptEngineStep, gptEngineStep } from './gpu_census_gpt.ts';
import { gptStepFlops } from './gpu_gpt.ts';
import { median } from './timing.ts';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const H100_BF16 = 989e12;
const MFU = 0.4;
const REF_BATCH = 8;
const SEQ = 1024;

/**
 * This thread's CPU milliseconds (Linux: /proc schedstat of the main thread, so not V8's compiler
 * and GC helpers; updated at scheduler ticks, so only good over many steps), else the process's.
 */
function threadCpuMs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    const c = process.cpuUsage();
    return (c.user + c.system) / 1000;
  }
}

type PhaseName = 'forward' | 'backward' | 'step';
const PHASES: PhaseName[] = ['forward', 'backward', 'step'];

/** One step's milliseconds per phase and host waits per phase (cudaSyncCount), after a synchronization. */
function timedStep(s: GptEngineStep, sync: boolean): { total: number; ms: Record<PhaseName, number>; syncs: Record<PhaseName, number> } {
  const dev = s.device;
  cudaSynchronize(dev);
  const ms = { forward: 0, backward: 0, step: 0 };
  const syncs = { forward: 0, backward: 0, step: 0 };
  let n = cudaSyncCount(dev);
  const t0 = performance.now();
  let t = t0;
  s.step((phase) => {
    if (phase === 'step' && sync) cudaSynchronize(dev); // real GPU: to the device's end
    const now = performance.now();
    const c = cudaSyncCount(dev);
    ms[phase] = now - t;
    syncs[phase] = c - n - (phase === 'step' && sync ? 1 : 0);
    t = now;
    n = c;
  });
  return { total: performance.now() - t0, ms, syncs };
}

async function main(): Promise<void> {
  const batch = arg('--batch', 1);
  const steps = arg('--steps', 30);
  const warmup = arg('--warmup', 10);
  const layers = arg('--layers', 12);
  const hostFloor = emulated();
  await initDistributed({ timeoutMs: 30_000 });
  const s = await gptEngineStep({ size: '124M', layers, nEmbd: 768, nHead: 12, seq: SEQ, batch, vocab: 50257 });
  const dev = s.device;
  try {
    for (let k = 0; k < warmup; k++) s.step();
    cudaSynchronize(dev);
    const census = censusTotals(cudaCensus(() => s.step()).entries);
    const c0 = threadCpuMs();
    const runs = Array.from({ length: steps }, () => timedStep(s, !hostFloor));
    const cpuMs = (threadCpuMs() - c0) / steps;
    const stepMs = median(runs.map((r) => r.total));
    const all = runs.map((r) => r.total);
    const flops = gptStepFlops(s.config, REF_BATCH, SEQ);
    const computeMs = (flops / (MFU * H100_BF16)) * 1e3;
    const perBatchMs = computeMs / REF_BATCH;
    // Emulated: the main thread's CPU time (a loaded machine stretches wall time, not this); a GPU: wall time.
    const hostMs = hostFloor ? cpuMs : stepMs;
    const minBatch = Math.floor(hostMs / perBatchMs) + 1;
    const what = hostFloor
      ? `host floor (emulated device, MESHTRAIN_CUDA_EMU_SKIP_WORK=1: kernels and library calls checked, not run)`
      : `wall time per step on ${cudaDeviceProperties(dev).name}, device synchronized: max(host, device), NOT the host floor`;
    console.log(`GPT-2 124M (${layers} layers) bf16 step through initialize() (ZeRO 0, AdamW), batch ${batch} x ${SEQ} tokens`);
    console.log(`measured: ${what}`);
    const label = hostFloor ? 'host ms per step' : 'wall ms per step (synchronized)';
    console.log(
      `${label}: ${stepMs.toFixed(2)} (median of ${steps} after ${warmup} warm-up; min ${Math.min(...all).toFixed(2)}, max ${Math.max(...all).toFixed(2)})`,
    );
    if (hostFloor) {
      // A shared machine's load stretches wall time; the main thread's CPU time much less.
      console.log(`main-thread CPU ms per step: ${cpuMs.toFixed(2)} (mean over the ${steps} steps, garbage collection included)`);
    }
    const phaseLine = PHASES.map((p) => `${p} ${median(runs.map((r) => r.ms[p])).toFixed(2)} ms (${runs[0].syncs[p]} host waits)`).join(', ');
    const freeMs = median(runs.map((r) => r.total - PHASES.reduce((t, p) => t + r.ms[p], 0)));
    console.log(
      `  by phase (medians): ${phaseLine}, the step's tidy scope freeing its tensors ${freeMs.toFixed(2)} ms` +
        `${hostFloor ? '' : '; forward and backward with 0 host waits are their host issue time'}`,
    );
    console.log(
      `device ops per step: ${census.deviceOps} (kernels ${census.kernel}, library ${census.library}, memcpy ${census.memcpy}, memset ${census.memset}; cudaMalloc ${census.malloc})`,
    );
    console.log(`host µs per device op: ${((hostMs * 1e3) / census.deviceOps).toFixed(2)}`);
    console.log(
      `compute per step at batch ${REF_BATCH} x ${SEQ}: FLOPs = tokens·(6·N + 12·L·T·d) = ${(flops / 1e12).toFixed(3)} TFLOP; ` +
        `at ${MFU * 100}% of ${H100_BF16 / 1e12} TFLOP/s: ${computeMs.toFixed(2)} ms`,
    );
    console.log(`(host figures below: ${hostFloor ? 'main-thread CPU ms' : 'wall ms'} per step, ${hostMs.toFixed(2)})`);
    console.log(`host / compute at batch ${REF_BATCH}: ${(hostMs / computeMs).toFixed(3)}`);
    console.log(
      `smallest batch (x ${SEQ} tokens) whose compute (${perBatchMs.toFixed(2)} ms per 1024-token row) exceeds ${hostMs.toFixed(2)} ms of host: ${minBatch}` +
        ' (host time taken as independent of the batch)',
    );
    // The last line is gpu_check.sh's key for this step.
    console.log(
      hostFloor
        ? `host floor ${cpuMs.toFixed(2)} ms/step main-thread CPU (wall median ${stepMs.toFixed(2)}), ${census.deviceOps} device ops, ${((hostMs * 1e3) / census.deviceOps).toFixed(1)} µs/op; ` +
            `compute at batch ${REF_BATCH}: ${computeMs.toFixed(2)} ms, host/compute ${(hostMs / computeMs).toFixed(2)}, smallest batch ${minBatch}`
        : `wall ${stepMs.toFixed(2)} ms/step synchronized at batch ${batch} (not the host floor); forward+backward issue ` +
            `${median(runs.map((r) => r.ms.forward + r.ms.backward)).toFixed(2)} ms; ${census.deviceOps} device ops; compute at batch ${REF_BATCH}: ${computeMs.toFixed(2)} ms`,
    );
    const out = process.argv.indexOf('--json');
    if (out >= 0) {
      writeFileSync(
        process.argv[out + 1],
        JSON.stringify({ hostFloor, batch, layers, hostMs, stepMs, cpuMs, runs, census, computeMs, minBatch, usPerOp: (hostMs * 1e3) / census.deviceOps }, null, 1),
      );
    }
  } finally {
    s.dispose();
    await destroyDistributed();
  }
}

/** Whether the emulated device really skips work: then copies to the host read zeros (an older build ignores the variable and would run 124M's kernels on the CPU). */
function emulatorSkips(): boolean {
  return noGrad(() => {
    const t = tensor([1], { device: 'cuda:0' });
    const v = (t.toArray() as Float32Array)[0];
    t.dispose();
    return v === 0;
  });
}

if (cudaIsAvailable() && (!emulated() || skipMode())) {
  if (emulated() && !emulatorSkips()) {
    console.log('skipped: this emulated build predates MESHTRAIN_CUDA_EMU_SKIP_WORK (it would run every kernel); rebuild it');
  } else {
    await main();
  }
} else if (!rerunEmulated()) {
  console.log(
    emulated()
      ? 'skipped: the emulated device runs every kernel; set MESHTRAIN_CUDA_EMU_SKIP_WORK=1'
      : 'skipped: no CUDA device (real or emulated: build one with npx cmake-js compile --out build-emu --CDMESHTRAIN_CUDA_EMU=ON)',
  );
}
