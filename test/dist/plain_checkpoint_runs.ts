// The runs and checks shared by the plain-optimizer pipeline checkpoint tests
// (fixtures/pipeline_plain_checkpoint.ts): launch the fixture, the resume checks, the reload at another
// mesh, and the comparison of two checkpoints tensor by tensor.
import * as assert from 'uvu/assert';
import { loadCheckpoint } from '../../src/engine/checkpoint/load.ts';
import { openCheckpoint } from '../../src/engine/checkpoint/reader.ts';
import { expectExit, runLauncher } from './helpers.ts';
import { jobOutputs } from './job_lines.ts';

export interface Resumed {
  rank: number;
  tag: string;
  loadedTag: string;
  client: unknown;
  globalStepsAfterLoad: number;
  lrAfterLoad: number;
  lrB: number;
  lossesA: number[];
  lossesResumed: number[];
  dtype: string;
  weightsEqual: boolean;
  optimizerEqual: boolean;
  lrEqual: boolean;
  globalSteps: number;
}

export type Mesh = { dp: number; pp: number; tp: number };

/** Runs the fixture on `mesh` (extra: its device and layers arguments); returns stdout. */
export async function launch(mesh: Mesh, dtype: string, dir: string, mode: string, extra: string[] = [], code = 0): Promise<string> {
  const n = mesh.dp * mesh.pp * mesh.tp;
  const r = await runLauncher(['--num_procs', String(n), '--no_local_rank'], 'pipeline_plain_checkpoint.ts', [JSON.stringify(mesh), dtype, dir, mode, ...extra], { timeoutMs: 50_000 });
  expectExit(r, code, `pipeline_plain_checkpoint ${mode} ${JSON.stringify(mesh)} ${dtype}`);
  return r.stdout;
}

/** Runs `jobs` on `mesh` in one launch (the fixture's "jobs" mode: the ranks start once); each job's stdout. */
export async function launchJobs(mesh: Mesh, jobs: { dtype: string; dir: string; mode: string }[]): Promise<string[]> {
  const n = mesh.dp * mesh.pp * mesh.tp;
  const args = jobs.map((j) => [JSON.stringify(mesh), j.dtype, j.dir, j.mode].join(';'));
  const r = await runLauncher(['--num_procs', String(n), '--no_local_rank'], 'pipeline_plain_checkpoint.ts', ['jobs', ...args], { timeoutMs: 50_000 * jobs.length });
  expectExit(r, 0, `pipeline_plain_checkpoint jobs ${args.join(' ')}`);
  return jobOutputs(r.stdout, jobs.length);
}

/** N steps + save + load + N steps against 2N steps on `mesh`: every rank's checks (bit for bit). */
export async function resume(mesh: Mesh, dtype: string, dir: string): Promise<Resumed[]> {
  return checkResumed(mesh, dtype, await launch(mesh, dtype, dir, 'resume'));
}

/** resume's checks of a 'resume' job's stdout. */
export function checkResumed(mesh: Mesh, dtype: string, stdout: string): Resumed[] {
  const out = [...stdout.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]) as Resumed);
  assert.is(out.length, mesh.dp * mesh.pp * mesh.tp, 'every rank reported');
  for (const x of out) {
    const at = `${JSON.stringify(mesh)} ${dtype} rank ${x.rank}`;
    assert.is(x.dtype, dtype, `${at}: parameter dtype`);
    assert.is(x.tag, 'global_step2', at);
    assert.is(x.loadedTag, 'global_step2', `${at}: loads the latest`);
    assert.equal(x.client, { note: 'plain' }, `${at}: client state`);
    assert.is(x.globalStepsAfterLoad, 2, `${at}: global steps after load`);
    assert.ok(Object.is(x.lrAfterLoad, x.lrB) && x.lrB > 0, `${at}: the learning rate after load (${x.lrAfterLoad}) is the saved engine's (${x.lrB})`);
    assert.is(x.lossesResumed.length, 4, at);
    assert.ok(x.lossesA.every((v, i) => Object.is(v, x.lossesResumed[i]) && Number.isFinite(v)), `${at}: losses ${x.lossesResumed} vs uninterrupted ${x.lossesA}`);
    assert.ok(x.weightsEqual, `${at}: weights equal 4 uninterrupted steps bit for bit`);
    assert.ok(x.optimizerEqual, `${at}: AdamW state (moments, masters, steps) equals bit for bit`);
    assert.ok(x.lrEqual, `${at}: the scheduler continued to the same learning rate`);
    assert.is(x.globalSteps, 4, at);
  }
  return out;
}

/** Every tensor of checkpoint `a` equals `b`'s (full tensors, bit for bit), and both hold the same names. */
export function sameCheckpoints(a: string, b: string, tag: string): number {
  const [ca, cb] = [openCheckpoint(a, tag), openCheckpoint(b, tag)];
  assert.equal([...cb.tensors.keys()].sort(), [...ca.tensors.keys()].sort(), `${b}: the same tensors as ${a}`);
  const want = [...ca.tensors.values()].map((t) => ({ name: t.name, fullShape: t.fullShape, dtype: t.dtype }));
  const [x, y] = [loadCheckpoint(a, { tag, want }), loadCheckpoint(b, { tag, want })];
  for (const { name } of want) {
    const [u, v] = [x.tensors.get(name)?.toArray() ?? [], y.tensors.get(name)?.toArray() ?? []];
    assert.ok(u.length > 0 && u.length === v.length && u.every((e, i) => Object.is(e, v[i])), `${name}: equal bit for bit`);
  }
  for (const t of [...x.tensors.values(), ...y.tensors.values()]) t.dispose();
  return want.length;
}

/** Loads dir/ck at `mesh`, re-saves it to dir/re there and trains one step: every rank's result. */
export async function reload(mesh: Mesh, dtype: string, dir: string, extra: string[] = []): Promise<{ rank: number; client: unknown; globalStepsAfterLoad: number; next: number[] }[]> {
  return checkReloaded(mesh, await launch(mesh, dtype, dir, 'reload', extra));
}

/** reload's checks of a 'reload' job's stdout. */
export function checkReloaded(mesh: Mesh, out: string): { rank: number; client: unknown; globalStepsAfterLoad: number; next: number[] }[] {
  const rs = [...out.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]));
  assert.is(rs.length, mesh.dp * mesh.pp * mesh.tp, `${JSON.stringify(mesh)}: every rank reported`);
  for (const r of rs) {
    assert.is(r.globalStepsAfterLoad, 2, `${JSON.stringify(mesh)} rank ${r.rank}`);
    assert.equal(r.client, { note: 'plain' });
    assert.ok(Number.isFinite(r.next[0]), `${JSON.stringify(mesh)}: trains on (${r.next})`);
  }
  return rs;
}
