/**
 * scripts/gpu_check.sh runs once, unattended, on a lent GPU machine: its plumbing is checked here
 * with the local node and addon (MT_EMU=1 mode): the steps run under their limits, a step that
 * fails does not stop the next, the summary table comes last in the output and in
 * $OUT/summary.txt, and each step's log comes back in $OUT/steps.tar.gz. Without a CUDA device the
 * CUDA test file reports SKIP and the report step FAIL (the addon sees no device).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable } from '../../src/index.ts';

const root = path.resolve(import.meta.dirname, '../..');
const addon = process.env.MESHTRAIN_ADDON ?? path.join(root, 'build', 'Release', 'meshtrain.node');

test('gpu_check.sh: every step reported, the summary table last, logs in $OUT', () => {
  const out = mkdtempSync(path.join(tmpdir(), 'mt-gpu-check-'));
  try {
    const r = spawnSync('bash', ['scripts/gpu_check.sh'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, MT_EMU: '1', MESHTRAIN_ADDON: addon, OUT: out, MT_ONLY: '^(report|unit/cuda_ops)$', MT_BUDGET: '100', OMP_NUM_THREADS: '1' },
    });
    const lines = r.stdout.trimEnd().split('\n');
    const last = lines.slice(-5).join('\n');
    assert.match(lines[lines.length - 1], /^== \d+ step\(s\) failed or timed out$/, `last line: ${lines[lines.length - 1]}`);
    assert.match(last, /^step +status +secs +key$/m);
    // Without a device the outcome is fixed; with one (the emulated build) the CUDA tests' own
    // results decide PASS or FAIL, and the exit status must agree with the table.
    const device = cudaIsAvailable();
    assert.match(last, new RegExp(`^report +${device ? 'PASS' : 'FAIL'} +\\d+ +cudaDevices ${device ? '[1-9]' : '0'}`, 'm'));
    assert.match(last, new RegExp(`^unit/cuda_ops +${device ? '(PASS|FAIL)' : 'SKIP'} +\\d+ +passed \\d+/\\d+`, 'm'));
    const failed = Number(/^== (\d+) step/m.exec(lines[lines.length - 1])?.[1]);
    assert.is(failed, (last.match(/^\S+ +(FAIL|TIMEOUT) /gm) ?? []).length);
    assert.is(r.status, failed === 0 ? 0 : 1, 'the exit status says whether a step failed');
    assert.ok(readFileSync(path.join(out, 'summary.txt'), 'utf8').includes('unit/cuda_ops'));
    assert.ok(readFileSync(path.join(out, 'gpu_check.log'), 'utf8').includes('== unit/cuda_ops'));
    assert.ok(existsSync(path.join(out, 'steps.tar.gz')));
    const logs = spawnSync('tar', ['-tzf', path.join(out, 'steps.tar.gz')], { encoding: 'utf8' }).stdout;
    assert.match(logs, /report\.log/);
    assert.match(logs, /unit_cuda_ops\.log/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('gpu_check.sh: MT_EMU=1 without MESHTRAIN_ADDON refuses with a message', () => {
  const env: Record<string, string | undefined> = { ...process.env, MT_EMU: '1', OUT: mkdtempSync(path.join(tmpdir(), 'mt-gpu-check-')) };
  delete env.MESHTRAIN_ADDON;
  const r = spawnSync('bash', ['scripts/gpu_check.sh'], { cwd: root, encoding: 'utf8', env, timeout: 30_000 });
  rmSync(env.OUT as string, { recursive: true, force: true });
  assert.is(r.status, 1);
  assert.match(r.stdout, /MT_EMU=1 needs MESHTRAIN_ADDON/);
});

test.run();
