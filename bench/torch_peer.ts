/**
 * Runs a PyTorch peer script of the GPU benchmarks (bench/gpu_torch_*.py) and reads the JSON lines it
 * prints. The peer is optional: a missing Python, PyTorch or CUDA device comes back as a reason to
 * print ("peer: skipped (reason)"), never as an error, so the benchmark goes on without it.
 */
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** The Python with PyTorch: $MT_PYTHON, the GPU image's venv, else python3 on the PATH. */
export function torchPython(): string {
  if (process.env.MT_PYTHON) return process.env.MT_PYTHON;
  return existsSync('/opt/torch/.venv/bin/python3') ? '/opt/torch/.venv/bin/python3' : 'python3';
}

/** The peer's JSON lines (one object per line it printed, in order), or why there are none. */
export type PeerRun<T> = { ok: true; results: T[]; cached: boolean } | { ok: false; reason: string };

export interface PeerOptions {
  /** Kill the peer after this long (default 240 s). */
  timeoutMs?: number;
  /**
   * A file holding an earlier run's results: read when it exists and was made with the same script
   * and arguments, else written after this run. Lets several benchmark steps of one gpu_check call
   * share one run of the peer (its number does not depend on the settings they vary).
   */
  cache?: string;
}

interface CacheFile {
  script: string;
  args: string[];
  results: unknown[];
}

/**
 * Runs `bench/<script>` with `args` under torchPython().
 * @example
 * const r = runTorchPeer<{ images_per_s: number }>('gpu_torch_resnet.py', ['--batch', '128']);
 * console.log(r.ok ? r.results[0].images_per_s : `peer: skipped (${r.reason})`);
 */
export function runTorchPeer<T>(script: string, args: string[], opts: PeerOptions = {}): PeerRun<T> {
  if (opts.cache && existsSync(opts.cache)) {
    try {
      const c = JSON.parse(readFileSync(opts.cache, 'utf8')) as CacheFile;
      if (c.script === script && JSON.stringify(c.args) === JSON.stringify(args)) return { ok: true, results: c.results as T[], cached: true };
    } catch {
      // An unreadable cache is measured again and overwritten.
    }
  }
  const timeoutMs = opts.timeoutMs ?? 240_000;
  const py = torchPython();
  const r = spawnSync(py, [path.join(import.meta.dirname, script), ...args], {
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  const results = `${r.stdout ?? ''}`
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as T);
  if (r.status === 0 && results.length > 0) {
    if (opts.cache) writeFileSync(opts.cache, `${JSON.stringify({ script, args, results } satisfies CacheFile)}\n`);
    return { ok: true, results, cached: false };
  }
  return { ok: false, reason: failureReason(py, script, r, timeoutMs) };
}

function failureReason(py: string, script: string, r: SpawnSyncReturns<string>, timeoutMs: number): string {
  const err = r.error as NodeJS.ErrnoException | undefined;
  if (err?.code === 'ENOENT') return `no ${py} (set MT_PYTHON to a Python with PyTorch)`;
  if (err?.code === 'ETIMEDOUT' || r.signal === 'SIGTERM') return `${script} ran past ${timeoutMs / 1000} s`;
  const tail = `${r.stderr ?? ''}`.trim().split('\n').filter(Boolean);
  const last = tail[tail.length - 1] ?? `exit ${r.status ?? r.signal}, no output`;
  if (/No module named 'torch'/.test(last)) return `PyTorch is not installed for ${py} (set MT_PYTHON)`;
  return `${script} exit ${r.status ?? r.signal}: ${last.replace(/^skipped: /, '')}`.slice(0, 200);
}
