/** Runs a benchmark script's worker side on real ranks through the launcher, from its parent side. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Launches `script` (a file URL, usually the caller's import.meta.url) on `np` ranks with this
 * process's arguments, one thread each, and resolves with the JSON after rank 0's "RESULT ". The
 * ranks' stderr passes through (after `stderr`, if given); a failed job rejects with its stdout.
 */
export function runBenchJob<T>(np: number, script: string, stderr: (d: string) => string = (d) => d): Promise<T> {
  const args = ['--import', 'tsx', path.join(ROOT, 'src/cli/launcher.ts'), '--num_procs', String(np), '--master_port', '0', '--no_local_rank',
    fileURLToPath(script), ...process.argv.slice(2)];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => process.stderr.write(stderr(d)));
    child.on('close', (code) => {
      const m = /RESULT (.*)/.exec(out);
      if (code !== 0 || !m) reject(new Error(`benchmark job on ${np} ranks failed (exit ${code})\n${out}`));
      else resolve(JSON.parse(m[1]));
    });
  });
}
