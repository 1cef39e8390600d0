// Engine checkpoints across ZeRO stages (fixtures/engine_checkpoint.ts, GPT tiny, AdamW + WarmupLR,
// clipping 1.0, f32): stage 0 saved at dp=2 loads at stage 3 on 4 ranks, and stage 3 saved at dp=4
// loads at stage 0 on 2 ranks (the tensors share their names; the step counts are translated).
// After loading, steps 4 and 5 give the losses the saving run computed within 1e-6 relative (the
// reduction order differs): step 4's loss checks the weights, step 5's the update made with the
// restored optimizer state and learning rate. Loading without the optimizer state instead makes
// step 5's loss differ by more than 1e-5, so the check sees the optimizer state.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'meshtrain-ck-stages-'));
const losses = (out: string, which: 4 | 5) => [...out.matchAll(new RegExp(`^\\[rank \\d\\] LOSS${which} (\\S+)`, 'gm'))].map((x) => Number(x[1]));
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

for (const [from, np, to, nl] of [[0, 2, 3, 4], [3, 4, 0, 2]]) {
  test(`engine checkpoint: stage ${from} saved at dp=${np} loads at stage ${to} dp=${nl}; steps 4 and 5 match within 1e-6`, async () => {
    const dir = path.join(tmp, `s${from}to${to}`);
    const saved = await runLauncher(['--num_procs', String(np)], 'engine_checkpoint.ts', ['save', dir, String(from)], { timeoutMs: 60_000 });
    expectExit(saved, 0, `save at stage ${from} dp=${np}`);
    const loaded = await runLauncher(['--num_procs', String(nl)], 'engine_checkpoint.ts', ['load', dir, String(to)], { timeoutMs: 60_000 });
    expectExit(loaded, 0, `load at stage ${to} dp=${nl}`);
    const [want4, want5] = [losses(saved.stdout, 4)[0], losses(saved.stdout, 5)[0]];
    const [got4, got5] = [losses(loaded.stdout, 4), losses(loaded.stdout, 5)];
    assert.is(got4.length, nl, loaded.stdout);
    for (const l of got4) assert.ok(rel(l, want4) <= 1e-6, `step 4: ${l} vs ${want4}`);
    for (const l of got5) assert.ok(rel(l, want5) <= 1e-6, `step 5: ${l} vs ${want5}`);
    assert.match(loaded.stdout, /LOSS4 \S+ 4$/m, 'globalSteps 4 after the loaded step');
    if (from === 0) {
      const fresh = await runLauncher(['--num_procs', String(nl)], 'engine_checkpoint.ts', ['load', dir, String(to), 'noopt'], { timeoutMs: 60_000 });
      expectExit(fresh, 0, 'load without the optimizer state');
      const l5 = losses(fresh.stdout, 5)[0];
      assert.ok(rel(l5, want5) > 1e-5, `without the optimizer state step 5 differs (${l5} vs ${want5})`);
    }
  });
}

test.after(() => rmSync(tmp, { recursive: true, force: true }));

test.run();
