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
import { expectExit, type Run, runLauncher } from './helpers.ts';
import { jobOutputs } from './job_lines.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'meshtrain-ck-stages-'));
const losses = (out: string, which: 4 | 5) => [...out.matchAll(new RegExp(`^\\[rank \\d\\] LOSS${which} (\\S+)`, 'gm'))].map((x) => Number(x[1]));
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

// Three launches run the five jobs (the fixture's "jobs" mode), so the ranks start three times, not five:
// stage 0 saved on 2 ranks; on 4 ranks it loads at stage 3 (with and without the optimizer state) and
// stage 3 is saved; on 2 ranks that loads at stage 0.
const dir = (from: number, to: number) => path.join(tmp, `s${from}to${to}`);
const A = [`save,${dir(0, 3)},0`];
const B = [`load,${dir(0, 3)},3`, `load,${dir(0, 3)},3,noopt`, `save,${dir(3, 0)},3`];
const C = [`load,${dir(3, 0)},0`];
let launches: Promise<Run[]> | null = null;

/** The stdout of `job` (running the three launches, in turn, the first time). */
async function jobStdout(job: string): Promise<string> {
  launches ??= (async () => {
    const runs: Run[] = [];
    for (const [np, jobs] of [[2, A], [4, B], [2, C]] as const) {
      runs.push(await runLauncher(['--num_procs', String(np)], 'engine_checkpoint.ts', ['jobs', ...jobs], { timeoutMs: 120_000 }));
      if (runs[runs.length - 1].code !== 0) break;
    }
    return runs;
  })();
  const runs = await launches;
  const [i, jobs] = A.includes(job) ? [0, A] : B.includes(job) ? [1, B] : [2, C];
  const r = runs[i];
  assert.ok(r, `an earlier launch failed: ${runs.map((x) => `exit ${x.code}\n${x.stdout}\n${x.stderr}`).join('\n')}`);
  expectExit(r, 0, `jobs ${jobs.join(' ')}`);
  return jobOutputs(r.stdout, jobs.length)[jobs.indexOf(job)];
}

for (const [from, np, to, nl] of [[0, 2, 3, 4], [3, 4, 0, 2]]) {
  test(`engine checkpoint: stage ${from} saved at dp=${np} loads at stage ${to} dp=${nl}; steps 4 and 5 match within 1e-6`, async () => {
    const saved = await jobStdout(`save,${dir(from, to)},${from}`);
    const loaded = await jobStdout(`load,${dir(from, to)},${to}`);
    const [want4, want5] = [losses(saved, 4)[0], losses(saved, 5)[0]];
    const [got4, got5] = [losses(loaded, 4), losses(loaded, 5)];
    assert.is(got4.length, nl, loaded);
    for (const l of got4) assert.ok(rel(l, want4) <= 1e-6, `step 4: ${l} vs ${want4}`);
    for (const l of got5) assert.ok(rel(l, want5) <= 1e-6, `step 5: ${l} vs ${want5}`);
    assert.match(loaded, /LOSS4 \S+ 4$/m, 'globalSteps 4 after the loaded step');
    assert.is(losses(saved, 4).length, np, saved);
    if (from === 0) {
      const l5 = losses(await jobStdout(`load,${dir(from, to)},${to},noopt`), 5)[0];
      assert.ok(rel(l5, want5) > 1e-5, `without the optimizer state step 5 differs (${l5} vs ${want5})`);
    }
  });
}

test.after(() => rmSync(tmp, { recursive: true, force: true }));

test.run();
