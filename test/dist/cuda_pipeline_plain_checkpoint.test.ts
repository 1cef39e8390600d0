// Pipeline checkpoints with the plain optimizer on a GPU (fixtures/pipeline_plain_checkpoint.ts): pp 2,
// both ranks sharing cuda:0, GPT-tiny with AdamW and WarmupLR in fp32 and bf16. N = 2 steps on
// cuda:0, save, a fresh cuda:0 engine loads, N more steps: losses, weights and the AdamW state
// (moments, fp32 masters, step counts) equal 2N uninterrupted cuda:0 steps bit for bit. The cuda:0
// checkpoint then loads into a CPU pipeline whose re-save equals it tensor for tensor, bit for bit
// (a copy, no arithmetic). Prints one SKIP line without a device.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadCheckpoint } from '../../src/engine/checkpoint/load.ts';
import { openCheckpoint } from '../../src/engine/checkpoint/reader.ts';
import { cudaIsAvailable, native } from '../../src/index.ts';
import { expectExit, runLauncher } from './helpers.ts';

const MESH = JSON.stringify({ dp: 1, pp: 2, tp: 1 });

async function launch(dtype: string, dir: string, mode: string, device: string): Promise<Record<string, unknown>[]> {
  const r = await runLauncher(['--num_procs', '2', '--no_local_rank'], 'pipeline_plain_checkpoint.ts', [MESH, dtype, dir, mode, device], { timeoutMs: 150_000 });
  expectExit(r, 0, `pipeline_plain_checkpoint ${mode} ${dtype} on ${device}`);
  const out = [...r.stdout.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]) as Record<string, unknown>);
  assert.is(out.length, 2, `${mode} ${dtype}: both ranks reported`);
  return out;
}

if (!cudaIsAvailable()) {
  test('plain pipeline checkpoints on cuda:0', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/dist/cuda_pipeline_plain_checkpoint (cuda:0): no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('plain pipeline checkpoints on cuda:0 (fp32, bf16): resume bit for bit; the cuda:0 checkpoint loads on the CPU unchanged', async () => {
    for (const dtype of ['f32', 'bf16']) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cuda-pipe-plain-'));
      try {
        for (const x of await launch(dtype, dir, 'resume', 'cuda:0')) {
          const at = `${dtype} rank ${x.rank}`;
          const [a, b] = [x.lossesA as number[], x.lossesResumed as number[]];
          assert.is(x.device, 'cuda:0', `${at}: the engine is on cuda:0`);
          assert.is(x.dtype, dtype, at);
          assert.is(x.globalStepsAfterLoad, 2, at);
          assert.ok(a.length === 4 && a.every((v, i) => Object.is(v, b[i]) && Number.isFinite(v)), `${at}: losses ${b} vs uninterrupted ${a}`);
          assert.ok(x.weightsEqual && x.optimizerEqual && x.lrEqual, `${at}: weights, AdamW state and lr equal bit for bit (${JSON.stringify(x)})`);
        }
        await launch(dtype, dir, 'reload', 'cpu');
        const tag = 'global_step2';
        const [ca, cb] = [path.join(dir, 'ck'), path.join(dir, 're')];
        const want = [...openCheckpoint(ca, tag).tensors.values()].map((t) => ({ name: t.name, fullShape: t.fullShape, dtype: t.dtype }));
        assert.equal([...openCheckpoint(cb, tag).tensors.keys()].sort(), want.map((w) => w.name).sort(), 'the CPU re-save holds the same tensors');
        const [x, y] = [loadCheckpoint(ca, { tag, want }), loadCheckpoint(cb, { tag, want })];
        for (const { name } of want) {
          const [u, v] = [x.tensors.get(name)?.toArray() ?? [], y.tensors.get(name)?.toArray() ?? []];
          assert.ok(u.length > 0 && u.length === v.length && u.every((e, i) => Object.is(e, v[i])), `${dtype} ${name}: cuda:0 -> CPU bit for bit`);
        }
        for (const t of [...x.tensors.values(), ...y.tensors.values()]) t.dispose();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  });
}

test.run();
