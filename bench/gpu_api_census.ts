/**
 * The CUDA runtime calls behind one GPT-2 124M bf16 engine step (forward + loss, backward, AdamW
 * at ZeRO 0; bench/gpu_census_gpt.ts builds it), counted by the emulated runtime
 * (native/cuda/emu/api_counts.h: every cudart entry point, each MT_LAUNCH as cudaLaunchKernel),
 * by phase, beside the step's device ops (cudaCensus). A runtime call that is not a launch, a
 * library call, a copy or a memset is host cost a real driver charges per op: this shows which.
 *
 *   npx tsx bench/gpu_api_census.ts [--layers 12] [--batch 1] [--seq 1024] [--json FILE]
 * Needs the emulation build; without it in this process it reruns itself on build-emu (or
 * MESHTRAIN_CUDA_EMU_BUILD) in timing-only mode (MESHTRAIN_CUDA_EMU_SKIP_WORK=1). On a real GPU
 * it prints one skipped line (the real runtime has no counters).
 */
import { writeFileSync } from 'node:fs';
import { censusTotals, cudaCensus, cudaIsAvailable, cudaSynchronize, destroyDistributed, initDistributed, native } from '../src/index.ts';
import { emulated, rerunEmulated, skipMode } from './emu_rerun.ts';
import { gptEngineStep } from './gpu_census_gpt.ts';

type Counts = Record<string, number>;
const apiCounts = (native as unknown as { cudaEmuApiCounts?: (reset?: boolean) => Counts }).cudaEmuApiCounts;

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};

const PHASES = ['forward', 'backward', 'step'] as const;
type Phase = (typeof PHASES)[number];

/** Calls per function made between two snapshots. */
function diff(after: Counts, before: Counts): Counts {
  const d: Counts = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) d[k] = v - (before[k] ?? 0);
  return d;
}

async function main(count: (reset?: boolean) => Counts): Promise<void> {
  const layers = arg('--layers', 12);
  const batch = arg('--batch', 1);
  const seq = arg('--seq', 1024);
  await initDistributed({ timeoutMs: 30_000 });
  const s = await gptEngineStep({ size: '124M', layers, nEmbd: 768, nHead: 12, seq, batch, vocab: 50257 });
  try {
    for (let k = 0; k < 3; k++) s.step(); // the first steps make the optimizer state and plans
    cudaSynchronize(s.device);
    const byPhase = {} as Record<Phase, Counts>;
    count(true); // zeroes the counters
    let last = count();
    const { entries } = cudaCensus(() =>
      s.step((phase) => {
        const now = count();
        byPhase[phase] = diff(now, last);
        last = now;
      }),
    );
    const ops = censusTotals(entries);
    const names = [...new Set(PHASES.flatMap((p) => Object.keys(byPhase[p])))];
    const total = (n: string) => PHASES.reduce((t, p) => t + (byPhase[p][n] ?? 0), 0);
    names.sort((a, b) => total(b) - total(a) || a.localeCompare(b));
    console.log(`CUDA runtime calls per GPT-2 124M (${layers} layers) bf16 engine step, batch ${batch} x ${seq} (emulated runtime's counters)`);
    console.log(
      `device ops per step (cudaCensus): ${ops.deviceOps} (kernels ${ops.kernel}, library ${ops.library}, memcpy ${ops.memcpy}, memset ${ops.memset}; cudaMalloc ${ops.malloc})`,
    );
    const w = Math.max(8, ...names.map((n) => n.length));
    console.log(`${'function'.padEnd(w)}  ${PHASES.map((p) => p.padStart(8)).join('  ')}     total  per op`);
    for (const n of names) {
      console.log(
        `${n.padEnd(w)}  ${PHASES.map((p) => String(byPhase[p][n] ?? 0).padStart(8)).join('  ')}  ${String(total(n)).padStart(8)}  ${(total(n) / ops.deviceOps).toFixed(2).padStart(6)}`,
      );
    }
    const all = names.reduce((t, n) => t + total(n), 0);
    const launches = total('cudaLaunchKernel');
    const work = launches + total('cudaMemsetAsync') + total('cudaMemcpyAsync');
    // The key line (gpu_check.sh's summary): runtime calls that queue no work, per device op.
    console.log(
      `runtime calls per step ${all} (launches ${launches}); calls that queue no work ${all - work}, ${((all - work) / ops.deviceOps).toFixed(2)} per device op`,
    );
    const out = process.argv.indexOf('--json');
    if (out >= 0) writeFileSync(process.argv[out + 1], JSON.stringify({ layers, batch, seq, deviceOps: ops.deviceOps, byPhase }, null, 1));
  } finally {
    s.dispose();
    await destroyDistributed();
  }
}

if (apiCounts && skipMode()) await main(apiCounts);
else if (apiCounts) console.log('skipped: the emulated device runs every kernel; set MESHTRAIN_CUDA_EMU_SKIP_WORK=1');
else if (emulated()) console.log('skipped: this emulated build predates the runtime call counters (native.cudaEmuApiCounts); rebuild it');
else if (cudaIsAvailable()) console.log('skipped: a real CUDA runtime has no call counters (the emulated runtime counts them)');
else if (!rerunEmulated()) console.log('skipped: no emulated build with call counters (npx cmake-js compile --out build-emu --CDMESHTRAIN_CUDA_EMU=ON)');
