/**
 * Running real processes from tests: every spawned process lives in its own process group and
 * is killed (with everything it started) on a hard timeout or when the test process exits, so
 * a failing test never leaves orphans or hangs.
 *
 * A multi-process test is a fixture under fixtures/ (it calls initDistributed() and prints what
 * it checked) spawned with runLauncher() (or runRanks(), without a launcher). The data-parallel
 * training-equivalence test of issue 4 belongs here as data_parallel.test.ts + a fixture that
 * trains with gradients all-reduced (world.allReduce(bucket, 'avg', { async: true }) from the
 * modules' gradient-ready hooks, buckets from world.sharedEmpty) and prints per-step losses as
 * JSON: run it with --num_procs 4 and with --num_procs 1 on the 4x batch, and compare the losses.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const FIXTURES = path.join(ROOT, 'test/dist/fixtures');
export const LAUNCHER = path.join(ROOT, 'src/cli/launcher.ts');

const live = new Set<ChildProcess>();
function killGroup(c: ChildProcess): void {
  try {
    if (c.pid) process.kill(-c.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
process.on('exit', () => {
  for (const c of live) killGroup(c);
});

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

/** Spawns `node --import tsx ...args`, collects output, and kills the whole group after `timeoutMs`. */
export function runNode(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Run> {
  const t0 = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: ROOT,
    env: { ...process.env, OMP_NUM_THREADS: '1', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child);
  }, opts.timeoutMs);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      killGroup(child);             // anything the process left behind in its group
      live.delete(child);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0, timedOut });
    });
  });
}

/** Runs the launcher: `meshtrain <launcherArgs> <script> <scriptArgs>`. */
export function runLauncher(launcherArgs: string[], script: string, scriptArgs: string[] = [], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  const port = launcherArgs.some((a) => a.startsWith('--master_port')) ? [] : ['--master_port', '0'];
  return runNode([LAUNCHER, ...port, ...launcherArgs, path.join(FIXTURES, script), ...scriptArgs], { timeoutMs: opts.timeoutMs ?? 60_000, env: opts.env });
}

/** Shared-memory segments of meshtrain jobs now in /dev/shm. */
export function segments(): string[] {
  return fs.readdirSync('/dev/shm').filter((f) => f.startsWith('mtshm.'));
}

/** Fails with both output streams when the run did not exit with `code`. */
export function expectExit(r: Run, code: number, what: string): void {
  if (r.code !== code || r.timedOut) {
    throw new Error(`${what}: expected exit ${code}, got ${r.code}${r.signal ? ` (${r.signal})` : ''}${r.timedOut ? ' after a timeout' : ''}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  }
}

/**
 * Runs `np` ranks of a fixture directly (no launcher): this process serves the store. Every
 * rank is killed on the timeout; resolves with each rank's run.
 */
export async function runRanks(np: number, script: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Run[]> {
  const { StoreServer } = await import('../../src/dist/store.ts');
  const server = await StoreServer.listen(0, '127.0.0.1');
  try {
    return await Promise.all(Array.from({ length: np }, (_, rank) => runNode([path.join(FIXTURES, script), ...args], {
      timeoutMs: opts.timeoutMs,
      env: {
        ...opts.env, RANK: String(rank), WORLD_SIZE: String(np), LOCAL_RANK: String(rank), LOCAL_SIZE: String(np),
        MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(server.port), MESHTRAIN_STORE_SERVED: '1',
      },
    })));
  } finally {
    await server.close();
  }
}
