// Pipeline checkpoints keep module buffers on a GPU (fixtures/pipeline_buffers_checkpoint.ts): the conv +
// BatchNorm net on pp 2, both ranks sharing cuda:0, the plain optimizer; f32, and f16 with the
// dynamic loss scaler (an overflow before the save). 2 steps + save + load + 2 steps equal 4
// uninterrupted cuda:0 steps bit for bit (losses, weights, running statistics, the scale of every
// step), and the scaler state after load is the one saved. The f32 cuda:0 checkpoint then loads
// into a CPU pipeline: every buffer bit for bit, and the re-save equals it (a copy, no arithmetic).
// Prints one SKIP line without a device.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable, native } from '../../src/index.ts';
import { BUFFERS, buffersOnce, savedBuffers } from './buffers_checkpoint_runs.ts';
import { expectExit, runLauncher } from './helpers.ts';
import { sameCheckpoints } from './plain_checkpoint_runs.ts';

async function launch(dtype: string, dir: string, mode: string, options: string): Promise<Record<string, unknown>[]> {
  const r = await runLauncher(['--num_procs', '2', '--no_local_rank'], 'pipeline_buffers_checkpoint.ts', ['{"dp":1,"pp":2}', dtype, dir, mode, options], { timeoutMs: 150_000 });
  expectExit(r, 0, `pipeline_buffers_checkpoint ${mode} ${dtype} ${options}`);
  const out = [...r.stdout.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]) as Record<string, unknown>);
  assert.is(out.length, 2, `${mode} ${dtype}: both ranks reported`);
  return out;
}

if (!cudaIsAvailable()) {
  test('pipeline buffer checkpoints on cuda:0', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/dist/cuda_pipeline_buffers_checkpoint (cuda:0): no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('conv + BatchNorm pipeline on cuda:0 (f32, f16 with an overflow before the save): resume bit for bit with running stats and loss scale; loads on the CPU unchanged', async () => {
    for (const dtype of ['f16', 'f32']) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cuda-pipe-buffers-'));
      try {
        for (const x of await launch(dtype, dir, 'resume', 'cuda')) {
          const at = `${dtype} rank ${x.rank}`;
          const [a, b] = [x.lossesA as number[], x.lossesResumed as number[]];
          assert.is(x.device, 'cuda:0', `${at}: the engine is on cuda:0`);
          assert.is(x.dtype, dtype, at);
          assert.ok(a.length === 4 && a.every((v, i) => Object.is(v, b[i]) && Number.isFinite(v)), `${at}: losses ${b} vs uninterrupted ${a}`);
          assert.ok(x.weightsEqual && x.buffersEqual, `${at}: weights and running statistics bit for bit`);
          assert.equal(x.scalesResumed, x.scalesA, `${at}: the loss scale of every step`);
          assert.equal(x.scalerAfterLoad, x.scalerAtSave, `${at}: the scaler state after load is the one saved`);
          assert.is(x.skippedC, x.skippedA, at);
          if (dtype === 'f16') {
            const s = x.scalerAtSave as { lastOverflowIter: number };
            assert.ok((x.skippedAtSave as number) > 0 && s.lastOverflowIter >= 0, `${at}: an overflow before the save (${JSON.stringify(x.scalerAtSave)})`);
          }
        }
        if (dtype === 'f16') continue;
        const ck = path.join(dir, 'ck');
        buffersOnce(ck, 'global_step2');
        const want = savedBuffers(ck, 'global_step2');
        for (const r of await launch(dtype, dir, 'reload', '')) {
          for (const [name, v] of Object.entries(r.buffers as Record<string, number[]>)) assert.equal(v, want[name], `CPU rank ${r.rank}: "${name}" from cuda:0 bit for bit`);
        }
        assert.ok(sameCheckpoints(ck, path.join(dir, 're'), 'global_step2') > BUFFERS.length, 'the CPU re-save equals the cuda:0 checkpoint');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  });
}

test.run();
