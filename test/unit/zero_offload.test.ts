/**
 * The ZeRO partition optimizer with each offload device (none, cpu, nvme) in one process: the
 * same kernel on the same numbers, so parameters and every state slot are bit-identical after
 * several steps (Adam/AdamW on f32 and bf16 partitions with an fp32 master, SGD with and without
 * momentum), for sub-group sizes that do and do not divide the partition and 2 to 4 buffers.
 * Memory: cpu puts the slots under memoryStats()['cpu-offload'], none under cpu; nvme keeps no
 * 'optim' bytes between steps and at most bufferCount sub-group buffers during one. Files: one
 * per partition, removed by destroy(); a truncated, deleted or replaced file is a clear error
 * before anything is updated; checkpoint views read the file and write back through flush().
 * The async file IO under it round-trips bytes and reports a short read with the file named.
 */
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyInPlace, manualSeed, memoryStats, randn, resetPeakMemoryStats, type Tensor, tensor, zeros } from '../../src/index.ts';
import { readAsync, wait, writeAsync } from '../../src/zero/offload/async_io.ts';
import { resolveOffload } from '../../src/zero/offload/options.ts';
import { resolveSpec, type ZeroOptimizerSpec } from '../../src/zero/optimizer.ts';
import { PartitionOptimizer } from '../../src/zero/partition_optimizer.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'mt-offload-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const N = 1001; // not a multiple of any sub-group size below

interface Run {
  values: number[];
  opt: PartitionOptimizer;
  p: Tensor;
  g: Tensor;
}

/** Three steps on seeded parameters and gradients; returns the parameters and every slot's values (opt left alive). */
function train(spec: ZeroOptimizerSpec, dtype: 'f32' | 'bf16', device: 'none' | 'cpu' | 'nvme', sub = 97, buffers = 3): Run {
  manualSeed(5);
  const p = randn([N]).to(dtype);
  const g = randn([N]).to(dtype);
  p.kept = true;
  g.kept = true;
  const opt = new PartitionOptimizer(resolveSpec(spec), p, {
    offload: resolveOffload({ device, nvmePath: dir, bufferCount: buffers }, sub, 'test'), name: 'unit',
  });
  for (let s = 1; s <= 3; s++) opt.step({ dtype, id: p.id, off: p.offset }, { dtype, id: g.id, off: g.offset }, s);
  const values = [...(p.to('f32').toArray() as Float32Array)];
  for (const slot of opt.slots) {
    const v = opt.stateView(slot, 0, N);
    values.push(...(v.toArray() as Float32Array));
    v.dispose();
  }
  opt.flush();
  return { values, opt, p, g };
}

function done(r: Run): void {
  r.opt.destroy();
  r.p.dispose();
  r.g.dispose();
}

function same(a: number[], b: number[], what: string): void {
  assert.is(a.length, b.length, `${what}: length`);
  const i = a.findIndex((x, j) => !Object.is(x, b[j]));
  assert.is(i, -1, `${what}: first difference at ${i}: ${a[i]} vs ${b[i]}`);
}

const SPECS: [string, ZeroOptimizerSpec][] = [
  ['AdamW', { type: 'AdamW', lr: 1e-2, weightDecay: 0.1 }],
  ['Adam', { type: 'Adam', lr: 1e-2, weightDecay: 0.01 }],
  ['SGD-momentum', { type: 'SGD', lr: 0.05, momentum: 0.9, nesterov: true }],
  ['SGD', { type: 'SGD', lr: 0.05 }],
];

for (const [name, spec] of SPECS) {
  for (const dtype of ['f32', 'bf16'] as const) {
    test(`offload: ${name} ${dtype}: cpu and nvme (sub-groups 97, 1001, 5000; 2-4 buffers) bit-identical to none`, () => {
      const ref = train(spec, dtype, 'none');
      const slots = ref.opt.slots.length;
      assert.is(slots, (spec.type === 'SGD' ? (spec.momentum ? 1 : 0) : 2) + (dtype === 'bf16' ? 1 : 0), 'slots: states + master');
      for (const [device, sub, buffers] of [['cpu', 97, 3], ['nvme', 97, 3], ['nvme', 97, 2], ['nvme', 250, 4], ['nvme', N, 3], ['nvme', 5000, 2]] as const) {
        const r = train(spec, dtype, device, sub, buffers);
        same(r.values, ref.values, `${device} sub ${sub} buffers ${buffers}`);
        done(r);
      }
      done(ref);
    });
  }
}

test('offload: cpu slots are counted under cpu-offload, none under cpu', () => {
  const optim = () => ({ cpu: memoryStats().cpu.optim.current, pool: memoryStats()['cpu-offload']?.optim.current ?? 0 });
  const base = optim();
  const none = train({ type: 'AdamW' }, 'bf16', 'none');
  assert.equal(optim(), { cpu: base.cpu + 3 * N * 4, pool: base.pool }, 'none: master + 2 states under cpu');
  done(none);
  const cpu = train({ type: 'AdamW' }, 'bf16', 'cpu');
  assert.equal(optim(), { cpu: base.cpu, pool: base.pool + 3 * N * 4 }, 'cpu: master + 2 states under cpu-offload');
  done(cpu);
  assert.equal(optim(), base, 'freed');
});

test('offload: nvme holds no optim bytes between steps and at most bufferCount sub-group buffers during one', () => {
  const base = memoryStats().cpu.optim.current;
  manualSeed(5);
  const p = randn([N]).to('bf16');
  const g = randn([N]).to('bf16');
  resetPeakMemoryStats();
  const opt = new PartitionOptimizer(resolveSpec({ type: 'AdamW' }), p, { offload: resolveOffload({ device: 'nvme', nvmePath: dir, bufferCount: 3 }, 100, 't'), name: 'mem' });
  assert.is(memoryStats().cpu.optim.current, base, 'nothing resident after construction');
  assert.is(memoryStats().cpu.optim.peak, base + 2 * 100 * 3 * 4, 'the initial write used 2 sub-group buffers');
  for (let s = 1; s <= 2; s++) {
    resetPeakMemoryStats();
    opt.step({ dtype: 'bf16', id: p.id, off: p.offset }, { dtype: 'bf16', id: g.id, off: g.offset }, s);
    assert.is(memoryStats().cpu.optim.current, base, `step ${s}: nothing resident after the step`);
    assert.is(memoryStats().cpu.optim.peak, base + 3 * 100 * 3 * 4, `step ${s}: peak = 3 buffers x 100 elements x 3 slots`);
  }
  const file = opt.file as string;
  assert.ok(existsSync(file), 'the state file exists');
  assert.equal(readdirSync(dir).filter((f) => f.includes('-mem-')), [path.basename(file)], 'one file for the partition');
  assert.ok(file.startsWith(dir) && file.includes(`-p${process.pid}-`), file);
  opt.destroy();
  assert.not.ok(existsSync(file), 'destroy() deletes the file');
  p.dispose();
  g.dispose();
});

test('offload: checkpoint views of nvme state read the file; changes are written back by flush (and by step)', () => {
  // Other test files' optimizer state may still be alive (freed when collected), so compare with what was there before.
  const before = memoryStats().cpu.optim.current;
  const a = train({ type: 'AdamW' }, 'bf16', 'nvme');
  const b = train({ type: 'AdamW' }, 'bf16', 'nvme');
  // Copy a's state into b through views (as a checkpoint load does), then both step once more: equal.
  b.opt.clearState();
  const zeros = b.opt.stateView('expAvg', 0, N);
  assert.ok((zeros.toArray() as Float32Array).every((x) => x === 0), 'clearState zeroed the state');
  zeros.dispose();
  for (const slot of a.opt.slots) {
    const from = a.opt.stateView(slot, 0, N);
    const to = b.opt.stateView(slot, 0, N);
    copyInPlace(to, from);
    from.dispose();
    to.dispose();
  }
  a.opt.flush();
  b.opt.flush();
  assert.ok(memoryStats().cpu.optim.current <= before, 'flush freed the resident copies');
  for (const r of [a, b]) r.opt.step({ dtype: 'bf16', id: r.p.id, off: r.p.offset }, { dtype: 'bf16', id: r.g.id, off: r.g.offset }, 4);
  const values = (r: Run) => {
    const out = [...(r.p.to('f32').toArray() as Float32Array)];
    for (const slot of r.opt.slots) {
      const v = r.opt.stateView(slot, 0, N);
      out.push(...(v.toArray() as Float32Array));
      v.dispose();
    }
    return out;
  };
  same(values(b), values(a), 'after a copied-in state and one more step');
  done(a);
  done(b);
});

test('offload: a truncated, deleted or replaced nvme file is a clear error and nothing is updated', () => {
  for (const damage of ['truncate', 'delete', 'replace'] as const) {
    const r = train({ type: 'AdamW' }, 'f32', 'nvme');
    const file = r.opt.file as string;
    const before = r.p.toArray();
    if (damage === 'truncate') truncateSync(file, 1000);
    if (damage === 'delete') unlinkSync(file);
    if (damage === 'replace') {
      unlinkSync(file);
      writeFileSync(file, Buffer.alloc(N * 2 * 4));
    }
    const want = { truncate: /has 1000 bytes, expected 8008 \(truncated or overwritten\)/, delete: /is missing/, replace: /was replaced/ }[damage];
    assert.throws(() => r.opt.step({ dtype: 'f32', id: r.p.id, off: r.p.offset }, { dtype: 'f32', id: r.g.id, off: r.g.offset }, 4), (e: Error) => {
      return e.message.includes(file) && want.test(e.message);
    }, damage);
    assert.equal(r.p.toArray(), before, `${damage}: the parameters were not touched`);
    assert.throws(() => r.opt.stateView('expAvg', 0, 1), (e: Error) => e.message.includes(file), `${damage}: checkpoint views too`);
    done(r);
    assert.not.ok(existsSync(file), `${damage}: destroy() removed the path`);
  }
});

test('offload: async file IO round-trips a tensor; reading past the end is a short-read error naming the file', () => {
  const file = path.join(dir, 'io.bin');
  const fd = openSync(file, 'w+');
  try {
    const src = tensor(Float32Array.from({ length: 1000 }, (_, i) => i * 0.5));
    const dst = zeros([1000]);
    wait(writeAsync(fd, 40, src, file));
    wait(readAsync(fd, 40, dst, file));
    assert.equal(dst.toArray(), src.toArray(), 'read back what was written at byte 40');
    assert.throws(() => wait(readAsync(fd, 400, dst, file)), (e: Error) => {
      return e.message.includes(file) && /short read: the file ends after 4040 bytes; wanted 4000 bytes from offset 400/.test(e.message);
    });
  } finally {
    closeSync(fd);
  }
});

test('offload: option errors name the key', () => {
  assert.throws(() => resolveOffload({ device: 'nvme' }, undefined, 'Z'), /Z: offloadOptimizer.nvmePath: a directory is required with device 'nvme'/);
  assert.throws(() => resolveOffload({ device: 'disk' as 'cpu' }, undefined, 'Z'), /offloadOptimizer.device must be 'none', 'cpu' or 'nvme', got "disk"/);
  assert.throws(() => resolveOffload({ device: 'nvme', nvmePath: dir, bufferCount: 1 }, undefined, 'Z'), /bufferCount/);
  assert.throws(() => resolveOffload({ device: 'cpu', nvme_path: dir } as never, undefined, 'Z'), /nvme_path.*did you mean "nvmePath"/);
  assert.throws(() => resolveOffload(undefined, 0, 'Z'), /subGroupSize/);
  const notDir = path.join(dir, 'a-file');
  writeFileSync(notDir, 'x');
  assert.throws(() => new PartitionOptimizer(resolveSpec({ type: 'AdamW' }), randn([10]), {
    offload: resolveOffload({ device: 'nvme', nvmePath: path.join(notDir, 'sub') }, undefined, 'Z'),
  }), /a-file/);
});

test.run();
