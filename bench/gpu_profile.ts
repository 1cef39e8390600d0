/**
 * Where a training step's device time goes: the timed launch census (cudaCensus(fn, { timing: true }))
 * of one step after warm-up, for
 *   gpt         GPT-2 124M bf16, batch 8 x 1024, AdamW: the step bench/gpu.ts (b) times (bench/gpu_gpt.ts)
 *   gpt-engine  the same model trained through initialize() (bf16, ZeRO 0; bench/gpu_census_gpt.ts)
 *   resnet      ResNet-101 bf16, batch 128, SGD with momentum: bench/gpu.ts (c) (bench/gpu_resnet.ts)
 * For each: the top sites by device time (ms, share of the step, count), the time by file or
 * library call, and the sum of op times against the step's wall time (events around untimed
 * steps, median): the gap is host-bound time, an idle device, or work the census does not see.
 * Timing adds two cudaEventRecord calls per op on the host, so the timed step is not the one whose
 * wall time is quoted. With $OUT set the tables also go to $OUT/profile.txt (scripts/gpu_check.sh).
 *   node --import tsx bench/gpu_profile.ts [--smoke] [--only gpt,gpt-engine,resnet] [--top 25] [--steps 3]
 *   node --import tsx bench/gpu_profile.ts --ncu-step [--smoke]   (one GPT step inside cudaProfilerStart/Stop, for ncu)
 * --smoke shrinks the models (GPT tiny 4 x 16, one timed step; ResNet-18 batch 2 with --only resnet)
 * for the emulated device, whose times are the CPU's running our kernels: it checks the plumbing only.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import {
  type CensusEntry, censusDeviceTotals, censusTotals, cudaCensus, cudaDeviceProperties, cudaIsAvailable, cudaSynchronize, destroyDistributed,
  formatCensusTime, initDistributed, native,
} from '../src/index.ts';
import { gptEngineStep } from './gpu_census_gpt.ts';
import { gptBenchStep } from './gpu_gpt.ts';
import { resnetBenchStep } from './gpu_resnet.ts';
import { DEV, deviceSeconds } from './gpu_timing.ts';
import { median } from './timing.ts';

const argv = process.argv.slice(2);
const smoke = argv.includes('--smoke');
const flag = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const top = Number(flag('--top') ?? 25);
const steps = Number(flag('--steps') ?? (smoke ? 1 : 3));
// Emulated, a ResNet-18 step takes most of a minute (11M parameters through the emulated kernels): --smoke leaves it out unless named.
const only = new Set((flag('--only') ?? (smoke ? 'gpt,gpt-engine' : 'gpt,gpt-engine,resnet')).split(','));
const outFile = process.env.OUT ? `${process.env.OUT}/profile.txt` : undefined;

interface Workload {
  name: string;
  step: () => void;
  dispose: () => void;
}

const GPT = smoke ? { batch: 4, seq: 16, size: 'tiny' as const } : { batch: 8, seq: 1024, size: '124M' as const };
const RESNET = smoke ? { batch: 2, depth: 18 as const } : { batch: 128, depth: 101 as const };

function gptPlain(): Workload {
  const g = gptBenchStep(GPT.batch, GPT.seq, GPT.size);
  let k = 0;
  return { name: `GPT-2 ${GPT.size} bf16, batch ${GPT.batch} x ${GPT.seq}, AdamW (bench/gpu.ts b)`, step: () => g.step(k++), dispose: g.dispose };
}

async function gptEngine(): Promise<Workload> {
  const o = smoke
    ? { layers: 2, nEmbd: 32, nHead: 4, seq: GPT.seq, batch: GPT.batch, vocab: 64 } // gptConfig('tiny')'s sizes
    : { layers: 12, nEmbd: 768, nHead: 12, seq: GPT.seq, batch: GPT.batch, vocab: 50257, size: '124M' };
  const s = await gptEngineStep(o);
  return { name: `GPT-2 ${GPT.size} bf16 through initialize() (ZeRO 0, AdamW), batch ${GPT.batch} x ${GPT.seq}`, step: () => s.step(), dispose: s.dispose };
}

function resnet(): Workload {
  const r = resnetBenchStep('bf16', RESNET.batch, RESNET.depth);
  return { name: `ResNet-${RESNET.depth} bf16, batch ${RESNET.batch}, 3x32x32, SGD momentum (bench/gpu.ts c)`, step: r.step, dispose: r.dispose };
}

/** Device time by file of the site (kernels, copies) or by library call (its name without the dtype). */
function byFile(entries: CensusEntry[]): { what: string; ms: number; count: number }[] {
  const m = new Map<string, { ms: number; count: number }>();
  for (const e of entries) {
    if (!e.timed) continue;
    const what = e.kind === 'library' ? e.name.split(' ')[0] : e.kind === 'kernel' ? e.site.replace(/:\d+$/, '') : `${e.kind}: ${e.name}`;
    const cur = m.get(what) ?? { ms: 0, count: 0 };
    cur.ms += e.deviceMs ?? 0;
    cur.count += e.count;
    m.set(what, cur);
  }
  return [...m.entries()].map(([what, v]) => ({ what, ...v })).sort((a, b) => b.ms - a.ms);
}

function profile(w: Workload): { text: string; wallMs: number; opMs: number } {
  for (let k = 0; k < 2; k++) w.step();
  // The first timed census creates the event pool (host work only); time the one after.
  cudaCensus(w.step, { timing: true });
  cudaSynchronize(DEV);
  const walls: number[] = [];
  const issues: number[] = [];
  for (let k = 0; k < steps; k++) {
    cudaSynchronize(DEV);
    walls.push(
      deviceSeconds(() => {
        const t0 = performance.now();
        w.step();
        issues.push(performance.now() - t0);
      }) * 1e3,
    );
  }
  const wallMs = median(walls);
  const issueMs = median(issues);
  cudaSynchronize(DEV);
  const { entries } = cudaCensus(w.step, { timing: true });
  const t = censusDeviceTotals(entries);
  const lines = [
    `== ${w.name}`,
    `step wall ${wallMs.toFixed(3)} ms (device events around untimed steps, median of ${steps}); host issue ${issueMs.toFixed(3)} ms; ` +
      `${censusTotals(entries).deviceOps} device ops, op times sum to ${t.ms.toFixed(3)} ms (${((t.ms / wallMs) * 100).toFixed(1)}% of the wall)`,
    '',
    formatCensusTime(entries, { wallMs, top }),
    '',
    'by file or library call:',
    `${'ms'.padStart(9)}  ${'share'.padStart(6)}  ${'count'.padStart(6)}  what`,
    ...byFile(entries).map((r) => `${r.ms.toFixed(3).padStart(9)}  ${`${((r.ms / wallMs) * 100).toFixed(1)}%`.padStart(6)}  ${String(r.count).padStart(6)}  ${r.what}`),
    '',
  ];
  return { text: lines.join('\n'), wallMs, opMs: t.ms };
}

if (!cudaIsAvailable()) {
  console.log(`bench/gpu_profile: no usable CUDA device (${native.deviceInfo().cudaStatus}); nothing measured`);
  process.exit(0);
}

if (argv.includes('--ncu-step')) {
  // For ncu --profile-from-start off: warm up, then only one step's kernels inside the range.
  const w = gptPlain();
  for (let k = 0; k < 3; k++) w.step();
  cudaSynchronize(DEV);
  const inRange = native.cudaProfilerRange('start') as boolean;
  w.step();
  cudaSynchronize(DEV);
  native.cudaProfilerRange('stop');
  w.dispose();
  console.log(`bench/gpu_profile --ncu-step: one ${w.name} step ${inRange ? 'inside cudaProfilerStart/Stop' : 'run (emulated device: no profiler range)'}`);
  process.exit(0);
}

const props = cudaDeviceProperties(DEV);
const head = `bench/gpu_profile on ${props.name}${smoke ? ' (--smoke: emulated-device plumbing, times are not GPU times)' : ''}\n`;
console.log(head);
if (outFile) writeFileSync(outFile, `${head}\n`);
const summary: string[] = [];
await initDistributed({ timeoutMs: 30_000 });
const makers: [string, () => Workload | Promise<Workload>][] = [
  ['gpt', gptPlain],
  ['gpt-engine', gptEngine],
  ['resnet', resnet],
];
let failed = 0;
for (const [key, make] of makers) {
  if (!only.has(key)) continue;
  let w: Workload | undefined;
  try {
    w = await make();
    const p = profile(w);
    console.log(p.text);
    if (outFile) appendFileSync(outFile, `${p.text}\n`);
    summary.push(`${key} wall ${p.wallMs.toFixed(1)} ops ${p.opMs.toFixed(1)} ms`);
  } catch (e) {
    failed++;
    const msg = `${key}: FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
    console.log(msg);
    if (outFile) appendFileSync(outFile, `${msg}\n`);
    summary.push(msg.split('\n')[0].slice(0, 120));
  } finally {
    w?.dispose();
  }
}
await destroyDistributed();
// The last line is gpu_check.sh's key for this step (it keeps 160 characters): wall vs op-time sum per workload.
console.log(`bench/gpu_profile: ${summary.join('; ')}`);
if (failed) process.exit(1);
