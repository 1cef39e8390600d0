/**
 * The main demo (examples/gpt_3d.ts) across 8-rank mesh shapes, side by side: tokens/s (median
 * step after a warm-up step), the measured pipeline bubble, the tp bytes per step on a rank of
 * the first stage against the analytic count, and the peak parameter + gradient + optimizer
 * bytes of the largest rank. Each shape is one launcher run of 8 processes (shm backend, one
 * thread each); on a machine with fewer than 8 cores the processes share cores, so the
 * numbers compare layouts' overheads, not their scaling.
 *   npx tsx bench/mesh.ts [--steps 6] [--zero 1] [--shapes "dp=8;dp=2,pp=2,tp=2"] [--layers 4 --embd 64 --heads 4 --seq 32]
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './timing.ts';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : def;
}
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const shapes = arg('--shapes', 'dp=8;dp=4,tp=2;dp=2,pp=2,tp=2;pp=2,tp=4;pp=4,tp=2;dp=2,pp=4').split(';');
const model = ['--layers', arg('--layers', '4'), '--embd', arg('--embd', '64'), '--heads', arg('--heads', '4'), '--seq', arg('--seq', '32')];
const common = [...model, '--micro', '4', '--microBatches', arg('--microBatches', '4'), '--steps', arg('--steps', '6'), '--zero', arg('--zero', '1')];

function run(shape: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/meshtrain.js'), '--num_procs', '8', path.join(ROOT, 'examples/gpt_3d.ts'), '--mesh', shape, ...common], {
      cwd: ROOT, env: { ...process.env, OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${shape} exited with ${code}:\n${out.slice(-3000)}`))));
  });
}

console.log(`meshtrain 3D benchmark: examples/gpt_3d.ts ${common.join(' ')} on 8 processes, ${os.availableParallelism()} cores`);
const cell = (s: string, w = 12) => s.padStart(w);
console.log(`${'mesh'.padEnd(16)}${cell('tokens/s')}${cell('bubble')}${cell('tp KiB/step', 14)}${cell('analytic', 10)}${cell('p+g+o KiB', 12)}`);
for (const shape of shapes) {
  const out = await run(shape);
  const steps = [...out.matchAll(/step (\d+): loss [\d.]+ +\d+ ms +(\d+) tokens\/s +measured bubble ([\d.]+)%/g)].map((m) => ({ step: Number(m[1]), tps: Number(m[2]), bubble: Number(m[3]) }));
  const timed = steps.filter((s) => s.step > 1);
  const rows = [...out.matchAll(/^\[rank 0\] +(\d+) \((\d+),(\d+),(\d+)\) +([\d. ]+?) +([\d.]+) \/ ([\d.]+)$/gm)];
  const first = rows.find((r) => r[2] === '0');
  const pgo = Math.max(...rows.map((r) => r[5].trim().split(/\s+/).slice(0, 3).map(Number).reduce((a, b) => a + b, 0)));
  console.log(
    `${shape.padEnd(16)}${cell(median(timed.map((s) => s.tps)).toFixed(0))}${cell(`${median(timed.map((s) => s.bubble)).toFixed(1)}%`)}` +
      `${cell(first ? first[6] : '-', 14)}${cell(first ? first[7] : '-', 10)}${cell(pgo.toFixed(1), 12)}`,
  );
}
console.log('\ntp KiB/step: the tensor-parallel collectives\' full-size bytes on the first stage\'s rank 0 (measured / analytic: 4 of b·s·h');
console.log('per block and micro-batch, 8 with sequence parallelism, plus the embedding and head). p+g+o: the largest rank\'s peak param + grad + optim.');
