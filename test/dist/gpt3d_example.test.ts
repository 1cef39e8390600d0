// The main demo (examples/gpt_3d.ts, what `npm start` runs) end to end through the launcher on 8
// processes: a smoke test of its output (the equivalence with one process is mesh3d.test.ts's).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, LAUNCHER, ROOT, runNode } from './helpers.ts';

test('examples/gpt_3d.ts on dp 2 x pp 2 x tp 2 with ZeRO-1 and sequence parallelism: loss falls; memory by tag and tp traffic per rank; timeline SVG', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-gpt3d-test-'));
  try {
    const r = await runNode(
      [LAUNCHER, '--master_port', '0', '--num_procs', '8', path.join(ROOT, 'examples/gpt_3d.ts'), '--mesh', 'dp=2,pp=2,tp=2', '--zero', '1', '--sp', '--steps', '6', '--svg', dir],
      { timeoutMs: 60_000 },
    );
    expectExit(r, 0, 'gpt_3d.ts on 8 ranks');
    const losses = [...r.stdout.matchAll(/^\[rank 0\] step \d+: loss (\d+\.\d+) +\d+ ms +\d+ tokens\/s +measured bubble [\d.]+%$/gm)].map((m) => Number(m[1]));
    assert.is(losses.length, 6, r.stdout);
    assert.ok(losses[5] < losses[0], `loss should fall: ${losses}`);
    const rows = [...r.stdout.matchAll(/^\[rank 0\] +(\d+) \((\d),(\d),(\d)\) +((?:[\d.]+ +){6})([\d.]+) \/ ([\d.]+)$/gm)];
    assert.is(rows.length, 8, `a memory row per rank:\n${r.stdout}`);
    for (const m of rows) {
      const tags = m[5].trim().split(/\s+/).map(Number);
      assert.ok(tags[0] > 0 && tags[1] > 0 && tags[2] > 0 && tags[3] > 0, `rank ${m[1]}: param, grad, optim and activation peaks (${tags})`);
      assert.is(m[6], m[7], `rank ${m[1]}: tp traffic per step measured = analytic`);
      assert.ok(Number(m[6]) > 0, `rank ${m[1]}: some tp traffic`);
    }
    assert.ok(r.stdout.includes(`measured pipeline timeline of the last step: ${path.join(dir, 'timeline.svg')}`), r.stdout);
    assert.ok(fs.readFileSync(path.join(dir, 'timeline.svg'), 'utf8').startsWith('<svg'), 'an SVG');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
