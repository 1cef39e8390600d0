/**
 * One pass over every fused attention kernel instance (bench/attention_instances.ts: fa2 and WMMA,
 * forward and backward, bf16/f16, head dims 32/64/128, causal and not, Tq != Tk, ragged T, aligned
 * qkv thirds and unaligned views) for compute-sanitizer to watch: scripts/sanitize_attention.sh
 * runs it under racecheck, synccheck and memcheck. A line per case, then a summary line last.
 * Exit 1 when a case failed its census or value check. --max-seconds S starts no case after S
 * seconds (the sanitizers' slowdown is not known ahead; GPT-2's cases come first); --no-values
 * skips the value comparison (the emulated device's skip-work mode).
 *   node --import tsx bench/gpu_attention_sanitize.ts [--max-seconds 40] [--no-values]
 */
import { cudaIsAvailable, native } from '../src/index.ts';
import { allInstances, CASES, runCase } from './attention_instances.ts';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`gpu_attention_sanitize: ${name} needs a positive number of seconds`);
  return v;
}

const maxSeconds = flag('--max-seconds', Number.POSITIVE_INFINITY);
const values = !process.argv.includes('--no-values');

if (!cudaIsAvailable()) {
  const info = native.deviceInfo();
  console.log(`SKIP bench/gpu_attention_sanitize: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
} else {
  const started = performance.now();
  const covered = new Set<string>();
  let failed = 0;
  let ran = 0;
  let worst = 0;
  for (const [i, c] of CASES.entries()) {
    if ((performance.now() - started) / 1000 > maxSeconds) break;
    const r = runCase(c, i, values);
    ran++;
    for (const x of r.instances) covered.add(x);
    if (values) worst = Math.max(worst, r.apart);
    const diff = values ? `fa2 vs WMMA ${r.apart.toExponential(1)}` : 'census only';
    console.log(`  case ${i + 1}/${CASES.length} ${r.name}: ${r.errors.length ? 'FAIL' : 'ok'}, ${diff} (${r.seconds.toFixed(1)} s)`);
    for (const e of r.errors) console.log(`    ${e}`);
    if (r.errors.length) failed++;
  }
  const all = allInstances();
  const missing = all.filter((x) => !covered.has(x));
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  if (missing.length) console.log(`  not reached: ${missing.join(', ')}`);
  console.log(
    `attention instances: ${all.length - missing.length}/${all.length} in ${ran}/${CASES.length} cases, ${failed} failed` +
      `${values ? `, fa2 vs WMMA max ${worst.toExponential(1)}` : ''} (${secs} s)`,
  );
  if (failed) process.exitCode = 1;
}
