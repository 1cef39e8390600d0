// engine.save16bitModel on 2 real ranks (fixtures/engine_save16.ts): after 2 steps of GPT tiny at
// ZeRO stages 0, 1, 2 (f32) and stage 2 in bf16, rank 0's safetensors file holds every state-dict
// tensor under its name, in order, with the model's dtype and shape and the same bytes (exact);
// the other rank gets null. The shard gather stage 3 uses (gatherFromShards) reproduces the full
// parameters bit for bit from the stage 1/2 partitions. An independent reader in Python (struct
// and json; torch.frombuffer when torch is installed) decodes the files to the same values.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readSafetensors, safetensorToTensor } from '../../src/index.ts';
import { expectExit, runLauncher } from './helpers.ts';

interface FileCheck {
  count: number;
  orderSame: boolean;
  mismatched: string[];
  dtypes: string[];
  metadata: Record<string, string>;
  gather?: { gathered: number; mismatched: string[] };
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'mt-save16-'));
let out: { stdout: string; results: Record<string, FileCheck> } | null = null;

async function runOnce(): Promise<NonNullable<typeof out>> {
  if (out) return out;
  const r = await runLauncher(['--num_procs', '2'], 'engine_save16.ts', [dir], { timeoutMs: 60_000 });
  expectExit(r, 0, 'save16bitModel on 2 ranks');
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  out = { stdout: r.stdout, results: JSON.parse(m![1]) };
  return out;
}

test('save16bitModel: stages 0, 1, 2 (f32) and bf16 write the model state dict exactly, on rank 0 only', async () => {
  const { stdout, results } = await runOnce();
  for (const c of ['0', '1', '2', 'bf16']) {
    const r = results[c];
    assert.is(r.count, 28, `${c}: every GPT tiny state-dict tensor`);
    assert.ok(r.orderSame, `${c}: state-dict order`);
    assert.equal(r.mismatched, [], `${c}: dtype, shape and bytes equal the model's`);
    assert.equal(r.dtypes, [c === 'bf16' ? 'bf16' : 'f32'], `${c}: the training dtype`);
    assert.is(r.metadata.format, 'pt');
    assert.ok(stdout.includes(`[rank 0] FILE ${c} ${path.join(dir, `model-${c}.safetensors`)}`), `${c}: rank 0 returns the path`);
    assert.ok(stdout.includes(`[rank 1] NULL ${c}`), `${c}: rank 1 returns null`);
    if (c !== '0') assert.equal(r.gather, { gathered: 28, mismatched: [] }, `${c}: gatherFromShards equals the full parameters`);
  }
});

test('save16bitModel: a file name with a directory part or an empty one is refused on every rank', async () => {
  const { stdout } = await runOnce();
  for (const what of ['slash', 'empty']) {
    const lines = [...stdout.matchAll(new RegExp(`^\\[rank \\d\\] REJECT ${what} (.*)$`, 'gm'))].map((x) => x[1]);
    assert.is(lines.length, 2, `${what}: both ranks`);
    assert.match(lines[0], /save16bitModel: filename must be a plain file name/);
  }
});

const hasPython = (() => {
  try {
    execFileSync('python3', ['-c', 'import json, struct'], { stdio: 'ignore', timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
})();

// Decodes F32 and BF16 (the upper half of an f32) with struct only; uses torch when present.
const PY_READER = `
import json, struct, sys
try:
    import torch
except ImportError:
    torch = None
data = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', data[:8])[0]
h = json.loads(data[8:8 + n])
out = {'torch': torch is not None, 'tensors': {}}
for k, v in h.items():
    if k == '__metadata__': continue
    a, b = v['data_offsets']
    raw = data[8 + n + a:8 + n + b]
    if torch is not None:
        dt = {'F32': torch.float32, 'BF16': torch.bfloat16}[v['dtype']]
        vals = torch.frombuffer(bytearray(raw), dtype=dt).reshape(v['shape']).double().flatten().tolist()
    elif v['dtype'] == 'F32':
        vals = list(struct.unpack('<%df' % (len(raw) // 4), raw))
    else:
        halves = struct.unpack('<%dH' % (len(raw) // 2), raw)
        vals = [struct.unpack('<f', struct.pack('<I', x << 16))[0] for x in halves]
    out['tensors'][k] = {'dtype': v['dtype'], 'shape': v['shape'], 'sum': sum(vals), 'first': vals[:3]}
print(json.dumps(out))
`;

test(`save16bitModel: Python reads the files (struct/json, or torch when installed)${hasPython ? '' : ' (skipped: no python3)'}`, async () => {
  if (!hasPython) return;
  await runOnce();
  for (const c of ['2', 'bf16']) {
    const file = path.join(dir, `model-${c}.safetensors`);
    const py = JSON.parse(execFileSync('python3', ['-c', PY_READER, file], { encoding: 'utf8', timeout: 60_000 }));
    const ours = readSafetensors(file);
    assert.is(Object.keys(py.tensors).length, ours.tensors.size);
    for (const [name, e] of ours.tensors) {
      const t = safetensorToTensor(e);
      const v = t.toList() as number[];
      t.dispose();
      const p = py.tensors[name];
      assert.is(p.dtype, c === 'bf16' ? 'BF16' : 'F32', name);
      assert.equal(p.shape, e.shape, name);
      assert.equal(p.first, v.slice(0, 3), `${name}: first values`);
      const sum = v.reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(p.sum - sum) <= 1e-9 * Math.max(1, Math.abs(sum)), `${name}: sum ${p.sum} vs ${sum}`);
    }
  }
});

test.after(() => rmSync(dir, { recursive: true, force: true }));

test.run();
