// Pipeline checkpoints with the plain optimizer across layouts (fixtures/pipeline_plain_checkpoint.ts):
// GPT-tiny on dp 2 × pp 2, AdamW with WarmupLR, fp32 and bf16 (fp32 masters). N = 2 steps, save, a
// fresh engine loads, N more steps: losses, weights and the optimizer state equal 2N uninterrupted
// steps bit for bit; only dp rank 0 of each stage writes. The checkpoint loads at dp 1 × pp 2 and
// (fp32) at one process (pp 1): saved again there, every tensor (weights, moments, masters, step
// counts) equals the original's bit for bit, and training continues.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadCheckpoint } from '../../src/engine/checkpoint/load.ts';
import { openCheckpoint } from '../../src/engine/checkpoint/reader.ts';
import { expectExit, runLauncher } from './helpers.ts';

interface Resumed {
  rank: number;
  tag: string;
  loadedTag: string;
  client: unknown;
  globalStepsAfterLoad: number;
  lrAfterLoad: number;
  lrB: number;
  lossesA: number[];
  lossesResumed: number[];
  dtype: string;
  weightsEqual: boolean;
  optimizerEqual: boolean;
  lrEqual: boolean;
  globalSteps: number;
}

async function launch(mesh: { dp: number; pp: number; tp: number }, dtype: string, dir: string, mode: string, code = 0) {
  const n = mesh.dp * mesh.pp * mesh.tp;
  const r = await runLauncher(['--num_procs', String(n), '--no_local_rank'], 'pipeline_plain_checkpoint.ts', [JSON.stringify(mesh), dtype, dir, mode], { timeoutMs: 50_000 });
  expectExit(r, code, `pipeline_plain_checkpoint ${mode} ${JSON.stringify(mesh)} ${dtype}`);
  return r.stdout;
}

async function resume(mesh: { dp: number; pp: number; tp: number }, dtype: string, dir: string): Promise<void> {
  const out = [...(await launch(mesh, dtype, dir, 'resume')).matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]) as Resumed);
  assert.is(out.length, mesh.dp * mesh.pp, 'every rank reported');
  for (const x of out) {
    const at = `${JSON.stringify(mesh)} ${dtype} rank ${x.rank}`;
    assert.is(x.dtype, dtype, `${at}: parameter dtype`);
    assert.is(x.tag, 'global_step2', at);
    assert.is(x.loadedTag, 'global_step2', `${at}: loads the latest`);
    assert.equal(x.client, { note: 'plain' }, `${at}: client state`);
    assert.is(x.globalStepsAfterLoad, 2, `${at}: global steps after load`);
    assert.ok(Object.is(x.lrAfterLoad, x.lrB) && x.lrB > 0, `${at}: the learning rate after load (${x.lrAfterLoad}) is the saved engine's (${x.lrB})`);
    assert.is(x.lossesResumed.length, 4, at);
    assert.ok(x.lossesA.every((v, i) => Object.is(v, x.lossesResumed[i]) && Number.isFinite(v)), `${at}: losses ${x.lossesResumed} vs uninterrupted ${x.lossesA}`);
    assert.ok(x.weightsEqual, `${at}: weights equal 4 uninterrupted steps bit for bit`);
    assert.ok(x.optimizerEqual, `${at}: AdamW state (moments, masters, steps) equals bit for bit`);
    assert.ok(x.lrEqual, `${at}: the scheduler continued to the same learning rate`);
    assert.is(x.globalSteps, 4, at);
  }
}

/** Every tensor of checkpoint `a` equals `b`'s (full tensors, bit for bit), and both hold the same names. */
function sameCheckpoints(a: string, b: string, tag: string): number {
  const [ca, cb] = [openCheckpoint(a, tag), openCheckpoint(b, tag)];
  assert.equal([...cb.tensors.keys()].sort(), [...ca.tensors.keys()].sort(), `${b}: the same tensors as ${a}`);
  const want = [...ca.tensors.values()].map((t) => ({ name: t.name, fullShape: t.fullShape, dtype: t.dtype }));
  const [x, y] = [loadCheckpoint(a, { tag, want }), loadCheckpoint(b, { tag, want })];
  for (const { name } of want) {
    const [u, v] = [x.tensors.get(name)?.toArray() ?? [], y.tensors.get(name)?.toArray() ?? []];
    assert.ok(u.length > 0 && u.length === v.length && u.every((e, i) => Object.is(e, v[i])), `${name}: equal bit for bit`);
  }
  for (const t of [...x.tensors.values(), ...y.tensors.values()]) t.dispose();
  return want.length;
}

test('dp 2 x pp 2, fp32 and bf16: resumes bit for bit; loads at dp 1 x pp 2 and (fp32) at one process, re-saved there equal bit for bit', async () => {
  for (const dtype of ['f32', 'bf16']) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-pipe-plain-'));
    try {
      await resume({ dp: 2, pp: 2, tp: 1 }, dtype, dir);
      const tag = 'global_step2';
      // dp replicas: only dp rank 0 of each stage writes weights and state (two of the four ranks write none).
      const perRank = openCheckpoint(path.join(dir, 'ck'), tag).indexes.map((ix) => ix.entries.length);
      assert.is(perRank.filter((e) => e === 0).length, 2, `entries per rank ${perRank}`);
      for (const mesh of dtype === 'f32' ? [{ dp: 1, pp: 2, tp: 1 }, { dp: 1, pp: 1, tp: 1 }] : [{ dp: 1, pp: 2, tp: 1 }]) {
        const out = await launch(mesh, dtype, dir, 'reload');
        const rs = [...out.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]));
        assert.is(rs.length, mesh.pp, `${JSON.stringify(mesh)}: every rank reported`);
        for (const r of rs) {
          assert.is(r.globalStepsAfterLoad, 2, `${JSON.stringify(mesh)} rank ${r.rank}`);
          assert.equal(r.client, { note: 'plain' });
          assert.ok(Number.isFinite(r.next[0]), `${JSON.stringify(mesh)}: trains on (${r.next})`);
        }
        const n = sameCheckpoints(path.join(dir, 'ck'), path.join(dir, 're'), tag);
        assert.ok(n > 20, `${n} tensors compared`);
        fs.rmSync(path.join(dir, 're'), { recursive: true, force: true });
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});

test.run();
