// A 3D checkpoint is layout-independent (fixtures/mesh3d_checkpoint.ts): GPT-tiny trained 2 steps at
// (dp, pp, tp) = (2, 2, 2) with ZeRO-1 is saved (weights and Adam state under the full model's names
// and shapes, every element written exactly once), then loaded at (1, 2, 1) with ZeRO-1 and at
// (4, 1, 2) with ZeRO-3; each continues for steps 3-4 with the losses of one process training 4
// steps within 1e-6 relative (measured <= 1.5e-8). Step 4's loss depends on the restored Adam
// moments, step 3's on the restored weights.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GPT, gptConfig } from '../../models/index.ts';
import { withoutInit } from '../../src/nn/init.ts';
import { expectExit, runLauncher } from './helpers.ts';
import { jobOutputs } from './job_lines.ts';

interface Result {
  rank: number;
  losses: Record<string, number>;
  lossRel: number;
  client: unknown;
  globalStepsAfterLoad: number;
}

type Mesh = { dp: number; pp: number; tp: number };
type Job = [Mesh, number, 'save' | 'load'];

/** Runs `jobs` (all on the same number of ranks) in one launch (the fixture's "jobs" mode): each job's stdout. */
async function launch(jobs: Job[], dir: string): Promise<string[]> {
  const n = jobs[0][0].dp * jobs[0][0].pp * jobs[0][0].tp;
  const args = jobs.map(([mesh, stage, mode]) => [JSON.stringify(mesh), stage, mode, dir].join(';'));
  const r = await runLauncher(['--num_procs', String(n), '--no_local_rank'], 'mesh3d_checkpoint.ts', ['jobs', ...args], { timeoutMs: 120_000 });
  expectExit(r, 0, `mesh3d_checkpoint ${args.join(' ')}`);
  return jobOutputs(r.stdout, jobs.length);
}

/** Every rank of one job reported the losses of one process within 1e-6, the global steps and (load) the client state. */
function check(stdout: string, [mesh, stage, mode]: Job): Result[] {
  const n = mesh.dp * mesh.pp * mesh.tp;
  const out = [...stdout.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]) as Result);
  assert.is(out.length, n, `${mode} ${JSON.stringify(mesh)}: every rank reported`);
  for (const x of out) {
    const at = `${mode} ${JSON.stringify(mesh)} ZeRO-${stage} rank ${x.rank}`;
    assert.equal(Object.keys(x.losses), mode === 'save' ? ['1', '2', '3', '4'] : ['3', '4'], at);
    assert.ok(x.lossRel <= 1e-6, `${at}: losses ${JSON.stringify(x.losses)} (rel ${x.lossRel})`);
    assert.is(x.globalStepsAfterLoad, 2, `${at}: global steps`);
    if (mode === 'load') assert.equal(x.client, { note: 'saved at 2x2x2' }, `${at}: client state`);
  }
  return out;
}

test('a checkpoint saved at (dp, pp, tp) = (2, 2, 2) loads at (1, 2, 1) and (4, 1, 2) and continues with the same losses', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-3d-ckpt-'));
  try {
    // One 8-rank launch saves at (2, 2, 2) and then loads at (4, 1, 2); the ranks start once for both.
    const eight: Job[] = [[{ dp: 2, pp: 2, tp: 2 }, 1, 'save'], [{ dp: 4, pp: 1, tp: 2 }, 3, 'load']];
    const [saved, loaded8] = await launch(eight, dir);
    check(saved, eight[0]);
    check(loaded8, eight[1]);
    // The files: GPT's names and full shapes; every element of every tensor written once over the 8 ranks.
    const entries = fs.readdirSync(path.join(dir, 'step2')).filter((f) => f.endsWith('.json'))
      .flatMap((f) => JSON.parse(fs.readFileSync(path.join(dir, 'step2', f), 'utf8')).entries as { name: string; fullShape: number[]; shardRange: [number, number]; group: string }[]);
    const sd = withoutInit(() => new GPT(gptConfig('tiny', { nLayer: 2 }))).stateDict();
    const written = new Map<string, number>();
    for (const e of entries) {
      const param = e.group === 'optimizer' ? e.name.replace(/^optimizer\./, '').replace(/\.(expAvg|expAvgSq)$/, '') : e.name;
      assert.ok(param in sd, `saved tensor ${e.name} is a GPT parameter (or its state)`);
      assert.equal(e.fullShape, [...sd[param].shape], `${e.name}: full shape`);
      written.set(e.name, (written.get(e.name) ?? 0) + e.shardRange[1] - e.shardRange[0]);
    }
    for (const [name, t] of Object.entries(sd)) {
      for (const k of [name, `optimizer.${name}.expAvg`, `optimizer.${name}.expAvgSq`]) assert.is(written.get(k), t.numel, `${k}: elements written`);
    }
    const two: Job = [{ dp: 1, pp: 2, tp: 1 }, 1, 'load'];
    check((await launch([two], dir))[0], two);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
