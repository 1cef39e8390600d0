// ZeRO stage 3 parameter offload (zero_optimization.offload_param) on 2 real ranks through
// initialize() and a DeepSpeed config (fixtures/zero3_offload_param.ts): GPT tiny, AdamW,
// gradient_clipping 0.5 (active), 2 accumulated micro-batches, persistence threshold 100.
// - offload_param cpu and nvme (max_in_cpu 0 with 3 swap buffers; max_in_cpu 5000 with 2; one
//   buffer without prefetch) give bit-identical per-step losses and final weights to none, with
//   offload_optimizer none and nvme (f32) and cpu (bf16).
// - memory per rank between steps: 'param' under cpu is the partition + the persistent parameters
//   with none, the persistent parameters only with cpu and nvme; cpu-offload holds the partition
//   (cpu), or the swap buffers (nvme: buffer_count x 2048 elements, the largest shard, also when
//   buffer_size is 1e6) plus the max_in_cpu prefix;
//   the nvme file holds the rest, exactly; files are deleted by destroy(); shards were read ahead
//   along the prefetch trace (nvme with 3 buffers).
// - checkpoints: 3 steps + save + load into a fresh engine + 3 steps equals 6 straight steps bit for
//   bit (param nvme + optimizer nvme; param cpu), also loaded into an engine without offload; with
//   both on nvme, saveCheckpoint and save16bitModel read the files in (their peaks) and leave the
//   'param'/'optim' bytes under cpu and cpu-offload at the between-steps values.
// - a truncated or deleted parameter file: the next step fails naming the file; a buffer_size below
//   the largest shard is refused by initialize() naming the key, the parameter and the size needed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';
import { assertResumedEqualsStraight, rankRecords } from './rank_records.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'mt-zero3-offload-param-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

interface Run {
  losses: number[];
  hash: string;
  after: { cpu: number; pool: number }[];
  cpuPeak: number;
  poolPeak: number;
  itemSize: number;
  partition: number;
  persistent: number;
  offload: { device: string; inMemory: number; inFile: number; file: string | null; swapBufferNumel: number; reads: { ahead: number; hits: number; blocking: number } };
  files: { f: string; bytes: number }[];
  left: number;
  freed: number;
}

const BUFFERS: Record<string, number> = { nvme: 3, 'nvme-split': 2, 'nvme-b1': 1 };

test('offload_param cpu and nvme equal none bit for bit (f32, bf16; with and without offload_optimizer); the partition lives where the device says', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'zero3_offload_param.ts', ['equiv', tmp], { timeoutMs: 90_000 });
  expectExit(r, 0, 'equiv');
  const runs = rankRecords<Run>(r.stdout, 'RUN');
  const groups: [string, string[]][] = [
    ['f32-optim-none', ['cpu', 'nvme', 'nvme-split', 'nvme-b1']], ['f32-optim-nvme', ['cpu', 'nvme']], ['bf16-optim-cpu', ['cpu', 'nvme']],
  ];
  for (const [prefix, devices] of groups) {
    const none = runs.get(`${prefix}-param-none`);
    assert.ok(none?.length === 2, r.stdout + r.stderr);
    assert.is(new Set(none.map((x) => x.hash)).size, 1, `${prefix}: ranks agree`);
    for (const ref of none) {
      const part = ref.partition * ref.itemSize;
      const persistent = ref.persistent * ref.itemSize;
      for (const a of ref.after) assert.equal(a, { cpu: part + persistent, pool: 0 }, `${prefix} none: the partition and the persistent parameters under cpu`);
    }
    for (const device of devices) {
      const got = runs.get(`${prefix}-param-${device}`) as Run[];
      assert.ok(got?.length === 2, `${prefix}-param-${device}: both ranks`);
      for (const [rank, g] of got.entries()) {
        const ref = none[rank];
        const what = `${prefix} param ${device} rank ${rank}`;
        assert.equal(g.losses, ref.losses, `${what}: losses bit for bit`);
        assert.is(g.hash, ref.hash, `${what}: final weights bit for bit`);
        const size = g.itemSize;
        const persistent = g.persistent * size;
        if (device === 'cpu') {
          for (const a of g.after) assert.equal(a, { cpu: persistent, pool: g.partition * size }, `${what}: partition under cpu-offload, persistent only under cpu`);
          assert.is(g.poolPeak, g.partition * size, `${what}: cpu-offload param peak = the partition`);
        } else {
          const o = g.offload;
          assert.is(o.inMemory + o.inFile, g.partition, `${what}: host prefix + file = the partition`);
          assert.is(o.inMemory, device === 'nvme-split' ? o.inMemory : 0, `${what}: max_in_cpu 0 keeps nothing in host memory`);
          if (device === 'nvme-split') assert.ok(o.inMemory > 0 && o.inMemory <= 5000 && o.inFile > 0, `${what}: max_in_cpu 5000 splits the partition (${o.inMemory} + ${o.inFile})`);
          const buffers = BUFFERS[device] * 2048 * size;
          for (const a of g.after) assert.equal(a, { cpu: persistent, pool: o.inMemory * size + buffers }, `${what}: persistent only under cpu; host prefix + ${BUFFERS[device]} swap buffers under cpu-offload`);
          assert.is(g.poolPeak, o.inMemory * size + buffers, `${what}: cpu-offload param peak`);
          assert.equal(g.files.map((f) => f.bytes), [o.inFile * size], `${what}: one parameter file per rank holding the rest (${JSON.stringify(g.files)})`);
          assert.is(g.left, 0, `${what}: destroy() deleted the file`);
          if (device === 'nvme') assert.ok(o.reads.ahead > 0 && o.reads.hits >= o.reads.ahead, `${what}: shards read ahead and used (${JSON.stringify(o.reads)})`);
          if (device === 'nvme-b1') assert.is(o.reads.ahead, 0, `${what}: no prefetch, no read-ahead`);
        }
        assert.ok(g.cpuPeak < ref.cpuPeak, `${what}: peak 'param' under cpu ${g.cpuPeak} < none's ${ref.cpuPeak}`);
        assert.is(g.freed, ref.freed, `${what}: destroy() leaves what none leaves`);
      }
    }
  }
});

test('offload_param: checkpoints round-trip bit for bit (nvme + optimizer nvme, cpu) and load without offload; nvme saves release what they read', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'zero3_offload_param.ts', ['ckpt', tmp], { timeoutMs: 60_000 });
  expectExit(r, 0, 'ckpt');
  assertResumedEqualsStraight(r.stdout, ['param-nvme-optim-nvme', 'param-cpu-optim-none'], 2, r.stdout + r.stderr);
  const resid = [...r.stdout.matchAll(/^\[rank (\d)\] RESID (.*)$/gm)];
  assert.is(resid.length, 2, r.stdout + r.stderr);
  for (const [, rank, json] of resid) {
    // [param cpu, param cpu-offload, optim cpu, optim cpu-offload], less the baseline
    const x = JSON.parse(json) as Record<'between' | 'savePeak' | 'afterSave' | 'save16Peak' | 'afterSave16', number[]>;
    assert.is(x.between[2] + x.between[3], 0, `rank ${rank}: no optimizer state resident between steps`);
    assert.ok(x.savePeak[2] > 0, `rank ${rank}: saveCheckpoint read the optimizer state in`);
    assert.ok(x.savePeak[0] + x.savePeak[1] > x.between[0] + x.between[1], `rank ${rank}: saveCheckpoint read the parameter partition in`);
    assert.ok(x.save16Peak[0] + x.save16Peak[1] > x.between[0] + x.between[1], `rank ${rank}: save16bitModel read the parameter partition in`);
    assert.equal(x.afterSave, x.between, `rank ${rank}: saveCheckpoint released what it read`);
    assert.equal(x.afterSave16, x.between, `rank ${rank}: save16bitModel released what it read`);
  }
});

test('offload_param nvme: a truncated or deleted parameter file is a clear error naming it; so is a too small buffer_size', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'zero3_offload_param.ts', ['damaged', tmp], { timeoutMs: 60_000 });
  expectExit(r, 0, 'damaged');
  const lines = (how: string) => [...r.stdout.matchAll(new RegExp(`^\\[rank (\\d)\\] DAMAGED ${how} (.*)$`, 'gm'))];
  const t = lines('truncated');
  assert.is(t.length, 2, r.stdout + r.stderr);
  for (const [, rank, msg] of t) assert.match(msg, new RegExp(`parameter file \\S+meshtrain-param-rank${rank}-\\S+\\.swp has 100 bytes, expected \\d+ \\(truncated or overwritten\\)`));
  const d = lines('deleted');
  assert.is(d.length, 2, r.stdout + r.stderr);
  for (const [, rank, msg] of d) assert.match(msg, new RegExp(`parameter file \\S+meshtrain-param-rank${rank}-\\S+\\.swp is missing`));
  const small = lines('small');
  assert.is(small.length, 2, r.stdout + r.stderr);
  for (const [, , msg] of small) {
    assert.match(msg, /zero_optimization\.offload_param\.buffer_size: 1000 elements cannot hold the shard of "\S+" \(2048 elements per rank at dp 2\); raise buffer_size to at least 2048/);
  }
});

test.run();
