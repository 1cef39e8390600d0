// The tensor-parallel example runs end to end through the launcher (a smoke test: the equivalence
// with one process is tp_gpt.test.ts's and tp_compose.test.ts's).
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, LAUNCHER, ROOT, runNode } from './helpers.ts';

test('examples/train_gpt_tp.ts: dp = 2 x tp = 2 with sequence parallelism trains (loss falls), prints the plan and memory per rank', async () => {
  const r = await runNode([LAUNCHER, '--master_port', '0', '--num_procs', '4', path.join(ROOT, 'examples/train_gpt_tp.ts'), '--tp', '2', '--sp', '--steps', '8'], {
    timeoutMs: 50_000,
  });
  expectExit(r, 0, 'train_gpt_tp.ts on 4 ranks');
  assert.ok(r.stdout.includes('tensor-parallel plan (sequence parallel):'), r.stdout);
  const m = /loss (\d+\.\d+) -> (\d+\.\d+) over 8 steps/.exec(r.stdout);
  assert.ok(m && Number(m[2]) < Number(m[1]), `loss should fall:\n${r.stdout}`);
  assert.is([...r.stdout.matchAll(/^\[rank \d\] memory \(tp \d, dp \d\): param /gm)].length, 4, r.stdout);
});

test.run();
