/**
 * bench/torch_peer.ts: how the GPU benchmarks run their PyTorch peers. PyTorch is not needed: the
 * interpreter ($MT_PYTHON) is a missing path or a small shell script standing in for Python, so what
 * is checked is ours: the JSON lines read, the reason given when there are none, the cache.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runTorchPeer } from '../../bench/torch_peer.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'mt-torch-peer-'));
const saved = process.env.MT_PYTHON;

/** An executable standing in for Python: prints `out`, `err` to stderr, exits `code`. */
function interpreter(name: string, out: string, err = '', code = 0): string {
  const f = path.join(dir, name);
  const sh = (t: string) => `'${t.replaceAll("'", "'\\''")}'`;
  writeFileSync(f, `#!/bin/sh\nprintf '%s' ${sh(out)}\nprintf '%s\\n' ${sh(err)} >&2\nexit ${code}\n`);
  chmodSync(f, 0o755);
  return f;
}

test.after.each(() => {
  if (saved === undefined) delete process.env.MT_PYTHON;
  else process.env.MT_PYTHON = saved;
});
test.after(() => rmSync(dir, { recursive: true, force: true }));

test('every JSON line the peer prints is read, in order, other lines ignored', () => {
  process.env.MT_PYTHON = interpreter('ok.sh', 'warming up\n{"vocab": 1}\n{"vocab": 2}\n');
  const r = runTorchPeer<{ vocab: number }>('gpu_torch_gpt.py', ['--smoke']);
  assert.equal(r, { ok: true, results: [{ vocab: 1 }, { vocab: 2 }], cached: false });
});

test('no peer: a missing interpreter, PyTorch absent, the script refusing, each a reason', () => {
  process.env.MT_PYTHON = path.join(dir, 'no-such-python');
  const missing = runTorchPeer('gpu_torch_gpt.py', []);
  assert.equal(missing.ok, false);
  assert.match(!missing.ok ? missing.reason : '', /^no .*no-such-python \(set MT_PYTHON/);
  process.env.MT_PYTHON = interpreter('notorch.sh', '', "ModuleNotFoundError: No module named 'torch'", 1);
  const noTorch = runTorchPeer('gpu_torch_gpt.py', []);
  assert.match(!noTorch.ok ? noTorch.reason : '', /^PyTorch is not installed for .*notorch\.sh/);
  process.env.MT_PYTHON = interpreter('nocuda.sh', '', 'skipped: no CUDA device visible to PyTorch 2.11.0', 1);
  const noCuda = runTorchPeer('gpu_torch_gpt.py', ['--attention']);
  assert.is(!noCuda.ok ? noCuda.reason : '', 'gpu_torch_gpt.py exit 1: no CUDA device visible to PyTorch 2.11.0');
  // Exit 0 without a JSON line is no result either.
  process.env.MT_PYTHON = interpreter('silent.sh', 'nothing\n');
  assert.match(runTorchPeer('gpu_torch_gpt.py', []).ok ? '' : 'no result', /no result/);
});

test('the cache: written by a run, read back for the same script and arguments only', () => {
  const cache = path.join(dir, 'peer.json');
  process.env.MT_PYTHON = interpreter('cached.sh', '{"step_ms": 20}\n');
  assert.equal(runTorchPeer('gpu_torch_gpt.py', ['--vocab', '50257'], { cache }), { ok: true, results: [{ step_ms: 20 }], cached: false });
  assert.equal(JSON.parse(readFileSync(cache, 'utf8')).args, ['--vocab', '50257']);
  // The interpreter gone: only the cache can answer.
  process.env.MT_PYTHON = path.join(dir, 'no-such-python');
  assert.equal(runTorchPeer('gpu_torch_gpt.py', ['--vocab', '50257'], { cache }), { ok: true, results: [{ step_ms: 20 }], cached: true });
  assert.is(runTorchPeer('gpu_torch_gpt.py', ['--vocab', '50304'], { cache }).ok, false, 'other arguments: measured again');
  assert.is(runTorchPeer('gpu_torch_resnet.py', ['--vocab', '50257'], { cache }).ok, false, 'another script: measured again');
  writeFileSync(cache, 'not json');
  assert.is(runTorchPeer('gpu_torch_gpt.py', ['--vocab', '50257'], { cache }).ok, false, 'an unreadable cache: measured again');
});

test.run();
