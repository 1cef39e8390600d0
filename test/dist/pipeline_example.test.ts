// examples/train_gpt_pipeline.ts on 2 ranks (ZB-H1, recomputation, 6 steps): it prints the
// partition and finite per-step losses that go down, and writes the planned and measured charts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, LAUNCHER, ROOT, runNode } from './helpers.ts';

test('examples/train_gpt_pipeline.ts: 2 pipeline ranks, ZB-H1 with recomputation, losses go down, SVGs written', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mt-pipe-'));
  try {
    const r = await runNode(
      [LAUNCHER, '--master_port', '0', '--num_procs', '2', path.join(ROOT, 'examples/train_gpt_pipeline.ts'), '--pp', '2', '--schedule', 'zb-h1', '--recompute', '1', '--steps', '6', '--lr', '1e-2', '--svg', dir],
      { timeoutMs: 55_000 },
    );
    expectExit(r, 0, 'train_gpt_pipeline on 2 ranks');
    assert.match(r.stdout, /tied 'wte': pipeline ranks 0, 1 \(owner 0\)/);
    const losses = [...r.stdout.matchAll(/step \d+: loss (\S+)/g)].map((m) => Number(m[1]));
    assert.is(losses.length, 6);
    assert.ok(losses.every(Number.isFinite), String(losses));
    assert.ok(losses[5] < losses[0], `loss goes down: ${losses}`);
    for (const f of ['planned.svg', 'measured.svg']) assert.match(fs.readFileSync(path.join(dir, f), 'utf8'), /<svg[\s\S]*class="action"/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
