import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { nodeRanks, parseHostfile, selectResources } from '../../src/cli/hosts.ts';
import { parseArgs } from '../../src/cli/launcher.ts';
import { expectExit, FIXTURES, LAUNCHER, ROOT, runLauncher } from './helpers.ts';

function envLines(out: string): Record<string, Record<string, unknown>> {
  const by: Record<string, Record<string, unknown>> = {};
  for (const m of out.matchAll(/^\[rank (\d+)\] ENV (.*)$/gm)) by[m[1]] = JSON.parse(m[2]);
  return by;
}

test('launcher: hostfile, --include/--exclude, --num_nodes/--num_gpus and node ranks', () => {
  const hosts = parseHostfile('# cluster\nworker-a slots=4\nworker-b slots=2  # small\n\nworker-c slots=8\n');
  assert.equal(hosts, [['worker-a', [0, 1, 2, 3]], ['worker-b', [0, 1]], ['worker-c', [0, 1, 2, 3, 4, 5, 6, 7]]]);
  assert.throws(() => parseHostfile('worker-a 4'), /expected "hostname slots=N"/);
  const inc = selectResources(hosts, { include: 'worker-a:1,3@worker-c' });
  assert.equal(inc, [['worker-a', [1, 3]], ['worker-c', [0, 1, 2, 3, 4, 5, 6, 7]]]);
  assert.equal(selectResources(hosts, { exclude: 'worker-a:0@worker-b' }), [['worker-a', [1, 2, 3]], ['worker-c', [0, 1, 2, 3, 4, 5, 6, 7]]]);
  assert.equal(selectResources(hosts, { numNodes: 2, numGpus: 2 }), [['worker-a', [0, 1]], ['worker-b', [0, 1]]]);
  assert.throws(() => selectResources(hosts, { include: 'worker-z' }), /host worker-z is not in the host list/);
  assert.throws(() => selectResources(hosts, { include: 'worker-b:5' }), /worker-b has no slot 5/);
  assert.equal(nodeRanks(inc, 1), { first: 2, local: [0, 1, 2, 3, 4, 5, 6, 7], world: 10 });
  assert.throws(() => nodeRanks(inc, 2), /--node_rank 2 is out of range: there are 2 nodes/);
  const o = parseArgs(['--num_gpus=4', '--master_port', '1234', '--no_local_rank', 'train.ts', '--lr', '0.1']);
  assert.equal([o.numProcs, o.masterPort, o.noLocalRank, o.script, o.args], [4, 1234, true, 'train.ts', ['--lr', '0.1']]);
  assert.throws(() => parseArgs(['--bogus', 'x.ts']), /unknown option --bogus/);
});

test('launcher: env, --local_rank, OMP_NUM_THREADS default and [rank N] prefixes', async () => {
  const r = await runLauncher(['--num_procs', '3'], 'env.ts', ['a', 'b c'], { env: { OMP_NUM_THREADS: '' } });
  expectExit(r, 0, 'env job');
  const by = envLines(r.stdout);
  assert.equal(Object.keys(by).sort(), ['0', '1', '2']);
  const omp = String(Math.max(1, Math.floor(os.availableParallelism() / 3)));
  for (const rank of ['0', '1', '2']) {
    const e = by[rank];
    assert.equal([e.RANK, e.LOCAL_RANK, e.WORLD_SIZE, e.LOCAL_SIZE, e.MASTER_ADDR, e.OMP_NUM_THREADS], [rank, rank, '3', '3', '127.0.0.1', omp]);
    assert.ok(Number(e.MASTER_PORT) > 0);
    assert.equal(e.argv, ['a', 'b c', `--local_rank=${rank}`]);
  }
  assert.match(r.stdout, /^\[rank 1\] partial$/m, 'a last line without newline is flushed with its prefix');
  assert.match(r.stderr, /^\[rank 2\] to stderr\n\[rank 2\] second line$/m);
});

test('launcher: hostfile node, --no_local_rank, a user OMP_NUM_THREADS and per-rank log files', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mt-launch-'));
  try {
    const hostfile = path.join(dir, 'hosts');
    fs.writeFileSync(hostfile, 'a slots=4\nb slots=3\n');
    // Node 1 (host b, slots 1 and 2): ranks 2 and 3 of 4. Node 1 does not serve the store.
    const r = await runLauncher(['--hostfile', hostfile, '--include', 'a:0,2@b:1,2', '--node_rank', '1', '--master_port', '29999', '--no_local_rank'], 'env.ts', [], { env: { OMP_NUM_THREADS: '7' } });
    expectExit(r, 0, 'hostfile job');
    const by = envLines(r.stdout);
    assert.equal(Object.keys(by).sort(), ['2', '3']);
    assert.equal([by['2'].LOCAL_RANK, by['2'].WORLD_SIZE, by['2'].LOCAL_SIZE, by['2'].CUDA_VISIBLE_DEVICES, by['2'].MASTER_PORT], ['0', '4', '2', '1', '29999']);
    assert.equal([by['3'].LOCAL_RANK, by['3'].CUDA_VISIBLE_DEVICES, by['3'].OMP_NUM_THREADS, by['3'].argv], ['1', '2', '7', []]);

    const logs = path.join(dir, 'logs');
    const l = await runLauncher(['--num_procs', '2', '--enable_each_rank_log', logs], 'env.ts');
    expectExit(l, 0, 'log job');
    assert.not.match(l.stdout, /ENV/, 'output went to the files');
    // stdout and stderr reach the launcher through two pipes, so their relative order in the file is not fixed.
    const log1 = fs.readFileSync(path.join(logs, 'rank_1.log'), 'utf8');
    assert.match(log1, /ENV .*"RANK":"1"/);
    assert.match(log1, /to stderr/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('launcher: a failing rank stops the others and its exit code and rank are reported', async () => {
  const r = await runLauncher(['--num_procs', '3'], 'fail.ts', ['1', '3'], { timeoutMs: 30_000 });
  expectExit(r, 3, 'failing job');
  assert.ok(r.ms < 15_000, `others were stopped quickly (${r.ms} ms)`);
  assert.match(r.stderr, /\[rank 1\] rank 1 failing on purpose/);
  assert.match(r.stderr, /meshtrain: rank 1 \(pid \d+\) exited with code 3; stopping the other 2 ranks/);
  assert.match(r.stderr, /exiting with code 3 because rank 1 failed/);
});

test('launcher: SIGINT is forwarded to every rank', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', LAUNCHER, '--master_port', '0', '--num_procs', '2', path.join(FIXTURES, 'sleep.ts')], {
    cwd: ROOT, env: { ...process.env, OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  const kill = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 30_000);
  let out = '';
  let sent = false;
  child.stdout.setEncoding('utf8').on('data', (d) => {
    out += d;
    if (!sent && (out.match(/ready/g) ?? []).length === 2) {
      sent = true;                    // once: a second signal means "kill now"
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
  clearTimeout(kill);
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // group already gone
  }
  assert.match(out, /\[rank 0\] got SIGINT/);
  assert.match(out, /\[rank 1\] got SIGINT/);
  assert.is(code, 130, 'exits like an interrupted process');
});

test.run();
