import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/gpt.ts';
import {
  exportSafetensors, loadCheckpoint, loadModuleCheckpoint, readSafetensors, safetensorToTensor, saveCheckpoint, saveModuleCheckpoint, type TensorShard,
} from '../../src/engine/checkpoint/index.ts';
import { tensorBytes } from '../../src/engine/checkpoint/tensor_bytes.ts';
import { AdamW, createLrScheduler, crossEntropy, DTYPES, type DType, getRngState, manualSeed, type Tensor, tensor, tidy } from '../../src/index.ts';
import { rejects } from './rejects.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'meshtrain-ckpt-'));
  dirs.push(d);
  return d;
}

test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Values exactly representable in every dtype (small integers and halves). */
function values(n: number, seed: number): number[] {
  return Array.from({ length: n }, (_, i) => ((i * 7 + seed * 13) % 61) / 2 - 15);
}

function make(dtype: DType, shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = values(n, seed);
  const data = dtype === 'i32' || dtype === 'i64' ? v.map(Math.trunc) : v;
  return tensor(data.length ? data : new Float32Array(0), { shape, dtype });
}

function sameBytes(a: Tensor, b: Tensor, what: string): void {
  assert.equal(Buffer.compare(Buffer.from(tensorBytes(a)), Buffer.from(tensorBytes(b))), 0, `${what}: bytes differ`);
}

/** Even split of n elements over `ways` ranks (the last ones may be short or empty). */
function split(n: number, ways: number, r: number): [number, number] {
  const per = Math.ceil(n / ways);
  return [Math.min(n, r * per), Math.min(n, (r + 1) * per)];
}

const FULL: { name: string; shape: number[]; dtype: DType }[] = [
  { name: 'layer.weight', shape: [6, 5], dtype: 'f32' },
  { name: 'layer.bias', shape: [7], dtype: 'f64' },
  { name: 'emb.weight', shape: [3, 3], dtype: 'bf16' },
  { name: 'steps', shape: [2], dtype: 'i64' },
];
const full = () => FULL.map((f, i) => make(f.dtype, f.shape, i));

/** Writes the full tensors as `ways` ranks would, rank 0 last (it publishes `latest`). */
async function saveSharded(dir: string, tag: string, ways: number, tensors = full()): Promise<void> {
  for (let r = ways - 1; r >= 0; r--) {
    const shards: TensorShard[] = FULL.map((f, i) => {
      const range = split(tensors[i].numel, ways, r);
      return { name: f.name, fullShape: f.shape, dtype: f.dtype, shardRange: range, data: tensors[i].reshape([tensors[i].numel]).narrow(0, range[0], range[1] - range[0]) };
    });
    await saveCheckpoint(dir, tag, { rank: r, worldSize: ways, tensors: shards, clientState: { step: 5, rank: r } });
  }
}

test('every dtype round-trips bit for bit, with plain state', async () => {
  const dir = tmp();
  const ts = DTYPES.map((d, i) => make(d, [2, 3], i));
  await saveCheckpoint(dir, 'step1', {
    tensors: DTYPES.map((d, i) => ({ name: `t.${d}`, fullShape: [2, 3], dtype: d, data: ts[i] })),
    clientState: { step: 1, note: 'hi', inf: Number.POSITIVE_INFINITY },
    optimizer: { state: { 0: { step: 3, data: new Float32Array([1.5, -2]) } } },
    scheduler: { lastBatchIteration: 0 },
  });
  assert.equal(readFileSync(path.join(dir, 'latest'), 'utf8').trim(), 'step1');
  const got = loadCheckpoint(dir, { want: DTYPES.map((d) => ({ name: `t.${d}`, fullShape: [2, 3], dtype: d })) });
  DTYPES.forEach((d, i) => {
    const t = got.tensors.get(`t.${d}`)!;
    assert.equal(t.shape, [2, 3]);
    assert.is(t.dtype, d);
    sameBytes(t, ts[i], d);
    assert.equal(t.toList(), ts[i].toList());
  });
  assert.equal(got.clientState, { step: 1, note: 'hi', inf: Number.POSITIVE_INFINITY });
  const opt = got.optimizer as { state: Record<string, { step: number; data: Float32Array }> };
  assert.ok(opt.state[0].data instanceof Float32Array);
  assert.equal(Array.from(opt.state[0].data), [1.5, -2]);
  assert.equal(got.scheduler, { lastBatchIteration: 0 });
});

test('saved as 4 ranks, loaded as 2 ranks and as 1: identical values', async () => {
  const dir = tmp();
  const ref = full();
  await saveSharded(dir, 'dp4', 4, ref);
  for (const ways of [2, 1, 3]) {
    for (let r = 0; r < ways; r++) {
      const want = FULL.map((f, i) => ({ name: f.name, fullShape: f.shape, dtype: f.dtype, shardRange: split(ref[i].numel, ways, r) }));
      const got = loadCheckpoint(dir, { rank: r, worldSize: ways, want });
      assert.is(got.savedWorldSize, 4);
      assert.equal(got.clientState, { step: 5, rank: 0 }, 'a different world size takes rank 0 state');
      FULL.forEach((f, i) => {
        const [s, e] = want[i].shardRange;
        const expect = ref[i].reshape([ref[i].numel]).narrow(0, s, e - s);
        const t = got.tensors.get(f.name)!;
        if (ways === 1) assert.equal(t.shape, f.shape);
        sameBytes(t, expect, `${f.name} at ${ways} ranks, rank ${r}`);
      });
    }
  }
  const same = loadCheckpoint(dir, { rank: 2, worldSize: 4, want: [] });
  assert.equal(same.clientState, { step: 5, rank: 2 }, 'the same world size takes its own rank state');
});

test('loading into existing tensors, and mismatched requests are refused', async () => {
  const dir = tmp();
  await saveSharded(dir, 'a', 2);
  const into = tensor(new Float32Array(30), { shape: [6, 5] });
  loadCheckpoint(dir, { want: [{ name: 'layer.weight', fullShape: [6, 5], dtype: 'f32', into }] });
  sameBytes(into, full()[0], 'into');
  assert.throws(() => loadCheckpoint(dir, { want: [{ name: 'layer.weigth', fullShape: [6, 5], dtype: 'f32' }] }), /no tensor "layer.weigth".*did you mean "layer.weight"/);
  assert.throws(() => loadCheckpoint(dir, { want: [{ name: 'layer.weight', fullShape: [5, 6], dtype: 'f32' }] }), /"layer.weight" is \[6, ?5\].*requested \[5, ?6\]/);
  assert.throws(() => loadCheckpoint(dir, { want: [{ name: 'layer.bias', fullShape: [7], dtype: 'f32' }] }), /"layer.bias" is f64.*requested f32/);
  assert.throws(() => loadCheckpoint(dir, { tag: 'nope', want: [] }), /does not exist/);
});

test('a truncated shard is refused, naming the file', async () => {
  const dir = tmp();
  await saveSharded(dir, 'a', 4);
  const file = path.join(dir, 'a', 'rank_00002.bin');
  truncateSync(file, 10);
  const want = [{ name: 'layer.weight', fullShape: [6, 5], dtype: 'f32' as DType }];
  assert.throws(() => loadCheckpoint(dir, { want }), /rank_00002\.bin has 10 bytes but its index records \d+; the shard is truncated/);
});

test('a flipped byte is refused by the checksum, and nothing is copied', async () => {
  const dir = tmp();
  await saveSharded(dir, 'a', 4);
  const file = path.join(dir, 'a', 'rank_00001.bin');
  const bytes = readFileSync(file);
  bytes[9] ^= 0x10; // inside rank 1's slice of layer.weight (the first tensor in the file)
  writeFileSync(file, bytes);
  const bias = tensor(new Float64Array(7), { shape: [7], dtype: 'f64' });
  const weight = tensor(new Float32Array(30), { shape: [6, 5] });
  const want = [
    { name: 'layer.bias', fullShape: [7], dtype: 'f64' as DType, into: bias },
    { name: 'layer.weight', fullShape: [6, 5], dtype: 'f32' as DType, into: weight },
  ];
  assert.throws(() => loadCheckpoint(dir, { want }), /checksum mismatch in .*rank_00001\.bin for tensor "layer\.weight"/);
  assert.equal(bias.toList(), new Array(7).fill(0), 'a verified tensor is not copied before every tensor is verified');
  // A rank that does not need the damaged slice still loads.
  const got = loadCheckpoint(dir, { rank: 0, worldSize: 2, want: [{ name: 'layer.weight', fullShape: [6, 5], dtype: 'f32', shardRange: [0, 5] }] });
  assert.is(got.tensors.get('layer.weight')!.numel, 5);
});

test('a missing rank shard is refused', async () => {
  const dir = tmp();
  await saveSharded(dir, 'a', 4);
  rmSync(path.join(dir, 'a', 'rank_00003.json'));
  assert.throws(() => loadCheckpoint(dir, { want: [] }), /saved by 4 ranks but the shard index of rank\(s\) 3 is missing/);
  const dir2 = tmp();
  await saveSharded(dir2, 'a', 4);
  rmSync(path.join(dir2, 'a', 'rank_00001.bin'));
  assert.throws(() => loadCheckpoint(dir2, { want: [] }), /rank_00001\.bin named by .*rank_00001\.json is missing/);
});

test('latest is written only after a complete save', async () => {
  const dir = tmp();
  await saveSharded(dir, 'good', 2);
  // A save that throws midway (a freed tensor): no file under a final name, latest unchanged.
  const t = full();
  const freed = tensor([1, 2, 3]);
  freed.dispose();
  await rejects(
    saveCheckpoint(dir, 'bad', {
      tensors: [
        { name: 'layer.weight', fullShape: [6, 5], dtype: 'f32', data: t[0] },
        { name: 'x', fullShape: [3], dtype: 'f32', data: freed },
      ],
    }),
    /disposed/,
  );
  assert.equal(readdirSync(path.join(dir, 'bad')), [], 'no partial or temporary file is left');
  assert.is(readFileSync(path.join(dir, 'latest'), 'utf8').trim(), 'good');
  // Rank 0 of 2 finishing before rank 1 (no barrier): refused, latest unchanged.
  await rejects(saveCheckpoint(dir, 'early', { rank: 0, worldSize: 2, tensors: [] }), /rank\(s\) 1 of 2 have not finished/);
  assert.is(readFileSync(path.join(dir, 'latest'), 'utf8').trim(), 'good');
  // The barrier runs before rank 0 publishes, and again after it (no rank returns before latest names the tag).
  const order: string[] = [];
  await saveCheckpoint(dir, 'next', {
    tensors: [],
    barrier: () => {
      order.push(`barrier:${existsSync(path.join(dir, 'next', 'rank_00000.json'))}`);
      order.push(`latest:${readFileSync(path.join(dir, 'latest'), 'utf8').trim()}`);
    },
  });
  assert.equal(order, ['barrier:true', 'latest:good', 'barrier:true', 'latest:next']);
  assert.is(readFileSync(path.join(dir, 'latest'), 'utf8').trim(), 'next');
  const loaded = loadCheckpoint(dir, { want: [] });
  assert.is(loaded.tag, 'next');
  // An interrupted write leaves only a temporary file, which loading ignores.
  writeFileSync(path.join(dir, 'good', '.rank_00000.bin.tmp-1-x'), 'garbage');
  assert.is(loadCheckpoint(dir, { tag: 'good', want: [{ name: 'steps', fullShape: [2], dtype: 'i64' }] }).tensors.get('steps')!.numel, 2);
});

function gptRun() {
  const model = new GPT(gptConfig('tiny', { dropout: 0.1 }));
  const optimizer = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
  const scheduler = createLrScheduler(optimizer, { type: 'WarmupLR', params: { warmup_max_lr: 3e-3, warmup_num_steps: 15 } });
  const step = (i: number): number =>
    tidy(() => {
      const ids = Array.from({ length: 4 * 16 }, (_, j) => (i * 31 + j * 7) % 64);
      const tg = Array.from({ length: 4 * 16 }, (_, j) => (i * 17 + j * 5 + 1) % 64);
      const loss = crossEntropy(model.forward(tensor(ids, { shape: [4, 16], dtype: 'i64' })), tensor(tg, { shape: [4, 16], dtype: 'i64' }));
      loss.backward();
      optimizer.step();
      optimizer.zeroGrad();
      scheduler.step();
      return loss.item();
    });
  return { model, optimizer, scheduler, step };
}

test('GPT-tiny: 10 steps + save + load + 10 steps equals 20 steps bit for bit', async () => {
  manualSeed(7);
  const ref = gptRun();
  const refLosses = Array.from({ length: 20 }, (_, i) => ref.step(i));
  const refRng = getRngState();

  const dir = tmp();
  manualSeed(7);
  const first = gptRun();
  for (let i = 0; i < 10; i++) first.step(i);
  await saveModuleCheckpoint(dir, first.model, { optimizer: first.optimizer, scheduler: first.scheduler, tag: 'step10', clientState: { step: 10 } });

  manualSeed(99); // a different seed: the weights, optimizer, schedule and RNG all come from the checkpoint
  const second = gptRun();
  const { tag, clientState } = loadModuleCheckpoint(dir, second.model, { optimizer: second.optimizer, scheduler: second.scheduler });
  assert.is(tag, 'step10');
  assert.equal(clientState, { step: 10 });
  const losses = Array.from({ length: 10 }, (_, i) => second.step(10 + i));
  assert.equal(losses, refLosses.slice(10));
  for (const [name, p] of ref.model.namedParameters()) sameBytes(second.model.stateDict()[name], p, name);
  assert.equal(second.optimizer.paramGroups.map((g) => g.lr), ref.optimizer.paramGroups.map((g) => g.lr));
  assert.equal(getRngState(), refRng, 'the dropout RNG continues where it was saved');
});

test('export: a 4-rank checkpoint as one safetensors file, read back exactly (and by the CLI)', async () => {
  const dir = tmp();
  const ref = full();
  await saveSharded(dir, 'dp4', 4, ref);
  const out = path.join(dir, 'model.safetensors');
  assert.equal(exportSafetensors(dir, {}, out), { tag: 'dp4', count: FULL.length });
  const bytes = readFileSync(out);
  const hlen = Number(bytes.readBigUInt64LE(0));
  assert.is((8 + hlen) % 8, 0, 'data starts 8-byte aligned');
  const header = JSON.parse(bytes.subarray(8, 8 + hlen).toString());
  assert.equal(header['emb.weight'].dtype, 'BF16');
  assert.equal(header.steps.dtype, 'I64');
  const st = readSafetensors(out);
  assert.is(st.metadata.tag, 'dp4');
  FULL.forEach((f, i) => {
    const e = st.tensors.get(f.name)!;
    assert.equal(e.shape, f.shape);
    assert.is(e.dtype, f.dtype);
    sameBytes(safetensorToTensor(e), ref[i], f.name);
  });
  const cli = path.join(dir, 'cli.safetensors');
  const r = spawnSync(process.execPath, ['bin/meshtrain.js', 'export', dir, '--out', cli, '--tag', 'dp4'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  assert.equal(readFileSync(cli), bytes);
  const bad = spawnSync(process.execPath, ['bin/meshtrain.js', 'export', dir], { encoding: 'utf8' });
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /no --out FILE/);
});

const hasTorch = (() => {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore', timeout: 60000 });
    return true;
  } catch {
    return false;
  }
})();

// A reader with no safetensors package: struct + json + torch.frombuffer.
const PY_READER = `
import json, struct, sys, torch
D = {'F32': torch.float32, 'F64': torch.float64, 'BF16': torch.bfloat16, 'F16': torch.float16, 'I32': torch.int32, 'I64': torch.int64}
data = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', data[:8])[0]
h = json.loads(data[8:8 + n])
out = {}
for k, v in h.items():
    if k == '__metadata__': continue
    a, b = v['data_offsets']
    t = torch.frombuffer(bytearray(data[8 + n + a:8 + n + b]), dtype=D[v['dtype']]).reshape(v['shape'])
    out[k] = {'dtype': str(t.dtype), 'shape': list(t.shape), 'sum': t.double().sum().item(), 'first': t.flatten()[:3].double().tolist()}
print(json.dumps(out))
`;

test(`PyTorch reads the exported file${hasTorch ? '' : ' (skipped: no python3 with torch)'}`, async () => {
  if (!hasTorch) return;
  const dir = tmp();
  const ref = full();
  await saveSharded(dir, 'a', 2, ref);
  const out = path.join(dir, 'model.safetensors');
  exportSafetensors(dir, {}, out);
  const got = JSON.parse(execFileSync('/usr/bin/python3', ['-c', PY_READER, out], { encoding: 'utf8', timeout: 120000 }));
  FULL.forEach((f, i) => {
    const g = got[f.name];
    const v = ref[i].toList();
    assert.equal(g.shape, f.shape);
    assert.is(g.dtype, { f32: 'torch.float32', f64: 'torch.float64', bf16: 'torch.bfloat16', f16: 'torch.float16', i32: 'torch.int32', i64: 'torch.int64' }[f.dtype]);
    assert.equal(g.first, v.slice(0, 3));
    assert.is(g.sum, v.reduce((a, b) => a + b, 0), `${f.name} checksum`);
  });
});

test.run();
