// Collectives on tensors a backend cannot read in place are staged through (pinned) host buffers
// (src/dist/staging.ts): fixtures/staging.ts checks every collective, f32/bf16/f64, sync and
// async, bit for bit against the unstaged CPU collective. On the CPU the staging is forced with
// MESHTRAIN_STAGE_HOST=1; with a CUDA device, 2 ranks share cuda:0 over shm (SKIP without one).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable, native } from '../../src/index.ts';
import { cpuTwins } from '../helpers/cpu_twins.ts';
import { expectExit, runLauncher } from './helpers.ts';

for (const np of cpuTwins ? [2, 3] : []) {
  test(`staging: every collective staged through host buffers equals the CPU collective bit for bit on ${np} ranks`, async () => {
    const r = await runLauncher(['--num_procs', String(np)], 'staging.ts', ['cpu'], { timeoutMs: 60_000 });
    expectExit(r, 0, `staging on ${np} ranks`);
    assert.is((r.stdout.match(/^\[rank \d+\] PASS 42$/gm) ?? []).length, np, r.stdout);
  });
}

if (!cudaIsAvailable()) {
  test('staging on cuda:0', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/dist/cuda_staging (cuda:0): no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('staging: 2 ranks sharing cuda:0 over shm equal the CPU collectives bit for bit; a collective inside a graph capture is refused and the group goes on', async () => {
    const r = await runLauncher(['--num_procs', '2'], 'staging.ts', ['cuda:0'], { timeoutMs: 120_000 });
    expectExit(r, 0, 'staging on cuda:0');
    assert.is((r.stdout.match(/^\[rank \d+\] PASS 43$/gm) ?? []).length, 2, r.stdout);
  });
}

test.run();
