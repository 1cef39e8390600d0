// ZeRO optimizer offload on 2 real ranks through initialize() and a DeepSpeed config
// (fixtures/zero_offload.ts): GPT tiny, AdamW, gradient_clipping 0.5 (active), 2 accumulated
// micro-batches, sub_group_size 3000 (5 sub-groups per rank), buffer_count 3.
// - offload_optimizer cpu and nvme give bit-identical per-step losses and final weights to none,
//   at stages 1, 2, 3 (f32) and stages 2, 3 bf16 (fp32 master in the offloaded slots).
// - memory per rank: none keeps 'optim' = slots x partition x 4 bytes under cpu; cpu keeps exactly
//   that under cpu-offload and none under cpu; nvme keeps 0 between steps, and its peak is the 3
//   sub-group buffers (3 x 3000 x slots x 4 bytes); one file per rank while training, none after
//   destroy().
// - checkpoints: 3 steps + save + load into a fresh engine + 3 steps equals 6 straight steps bit
//   for bit (stage 1 cpu, stages 2 and 3 nvme: the state is read back from the files), and loading the
//   offloaded run's checkpoint into an engine without offload continues identically; after a save
//   with nvme, no 'optim' bytes stay resident (the save's peak shows it read the state in).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';
import { assertResumedEqualsStraight, rankRecords } from './rank_records.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'mt-zero-offload-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

interface Run {
  losses: number[];
  hash: string;
  after: { cpu: number; pool: number }[];
  peak: number;
  partition: number;
  slots: number;
  files: string[];
  left: number;
  freed: number;
}

test('zero offload: cpu and nvme equal no offload bit for bit at stages 1, 2, 3 (f32, bf16); memory lives where the device says', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'zero_offload.ts', ['equiv', tmp], { timeoutMs: 90_000 });
  expectExit(r, 0, 'equiv');
  const runs = rankRecords<Run>(r.stdout, 'RUN');
  for (const prefix of ['s1', 's2', 's3', 's2-bf16', 's3-bf16']) {
    const none = runs.get(`${prefix}-none`);
    assert.ok(none?.length === 2, r.stdout);
    assert.is(new Set(none.map((x) => x.hash)).size, 1, `${prefix}: ranks agree`);
    for (const device of ['cpu', 'nvme']) {
      const got = runs.get(`${prefix}-${device}`) as Run[];
      for (const [rank, g] of got.entries()) {
        const ref = none[rank];
        const what = `${prefix} ${device} rank ${rank}`;
        assert.equal(g.losses, ref.losses, `${what}: losses bit for bit`);
        assert.is(g.hash, ref.hash, `${what}: final weights bit for bit`);
        const bytes = g.slots * g.partition * 4;
        if (device === 'cpu') {
          for (const a of g.after) assert.equal(a, { cpu: 0, pool: bytes }, `${what}: optim under cpu-offload only`);
        } else {
          for (const a of g.after) assert.equal(a, { cpu: 0, pool: 0 }, `${what}: no optim bytes resident between steps`);
          assert.is(g.peak, 3 * 3000 * g.slots * 4, `${what}: peak = 3 sub-group buffers`);
          assert.is(g.files.length, 1, `${what}: one state file per rank (${g.files})`);
          assert.is(g.left, 0, `${what}: destroy() deleted the file`);
        }
        assert.is(g.freed, 0, `${what}: everything freed`);
      }
    }
    for (const ref of none) for (const a of ref.after) assert.equal(a, { cpu: ref.slots * ref.partition * 4, pool: 0 }, `${prefix} none: optim under cpu`);
  }
});

test('zero offload: checkpoints round-trip bit for bit with cpu (stage 1) and nvme (stages 2, 3), and load without offload; nvme saves release the state', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'zero_offload.ts', ['ckpt', tmp], { timeoutMs: 90_000 });
  expectExit(r, 0, 'ckpt');
  assertResumedEqualsStraight(r.stdout, ['s1-cpu', 's2-nvme', 's3-nvme'], 2, r.stdout);
  const resid = rankRecords<{ between: { cpu: number; pool: number }; savePeak: number; afterSave: { cpu: number; pool: number } }>(r.stdout, 'RESID');
  for (const key of ['s2-nvme', 's3-nvme']) {
    const both = resid.get(key);
    assert.ok(both?.length === 2, r.stdout);
    for (const [rank, x] of both.entries()) {
      assert.equal(x.between, { cpu: 0, pool: 0 }, `${key} rank ${rank}: nothing resident between steps`);
      assert.ok(x.savePeak > 0, `${key} rank ${rank}: the save read the state in (peak ${x.savePeak})`);
      assert.equal(x.afterSave, x.between, `${key} rank ${rank}: saveCheckpoint released the state it read`);
    }
  }
});

test.run();
