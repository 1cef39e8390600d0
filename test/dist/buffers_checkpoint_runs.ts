// The runs and checks shared by the pipeline buffer checkpoint tests (fixtures/pipeline_buffers_checkpoint.ts):
// launch the fixture (f32), parse its RESULT / ERROR lines, where each buffer was written, the saved values.
import * as assert from 'uvu/assert';
import { loadCheckpoint } from '../../src/engine/checkpoint/load.ts';
import { openCheckpoint } from '../../src/engine/checkpoint/reader.ts';
import { expectExit, runLauncher } from './helpers.ts';

export type Mesh = { dp: number; pp: number; tp?: number };
export const BUFFERS = ['1.running_mean', '1.running_var', '1.num_batches_tracked', '4.running_mean', '4.running_var', '4.num_batches_tracked'];

export async function launch(mesh: Mesh, dir: string, mode: string, options: string[] = []): Promise<string> {
  const r = await runLauncher(['--num_procs', String(mesh.dp * mesh.pp * (mesh.tp ?? 1)), '--no_local_rank'], 'pipeline_buffers_checkpoint.ts', [JSON.stringify(mesh), 'f32', dir, mode, options.join(',')], {
    timeoutMs: 50_000,
  });
  expectExit(r, 0, `pipeline_buffers_checkpoint ${mode} ${JSON.stringify(mesh)} ${options}`);
  return r.stdout;
}
export const results = (out: string) => [...out.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]));
export const errors = (out: string) => [...out.matchAll(/^\[rank \d+\] ERROR (.*)$/gm)].map((m) => m[1]);

/** Every buffer is in the checkpoint exactly once (one rank's index, one whole slice), as a model tensor; by name, the rank that wrote it. */
export function buffersOnce(ck: string, tag: string): Record<string, number> {
  const { indexes, tensors } = openCheckpoint(ck, tag);
  const writer: Record<string, number> = {};
  for (const name of BUFFERS) {
    const ranks = indexes.filter((ix) => ix.entries.some((e) => e.name === name)).map((ix) => ix.rank);
    const entries = indexes.flatMap((ix) => ix.entries.filter((e) => e.name === name));
    assert.is(entries.length, 1, `${ck}: "${name}" written once (got ${entries.length})`);
    assert.is(tensors.get(name)?.group, 'model', name);
    writer[name] = ranks[0];
  }
  return writer;
}

/** The saved buffers' values by name. */
export function savedBuffers(ck: string, tag: string): Record<string, number[]> {
  const saved = openCheckpoint(ck, tag).tensors;
  const want = BUFFERS.map((name) => ({ name, fullShape: saved.get(name)?.fullShape ?? [], dtype: saved.get(name)?.dtype ?? 'f32' }));
  const got = loadCheckpoint(ck, { tag, want }).tensors;
  const out = Object.fromEntries(BUFFERS.map((n) => [n, Array.from(got.get(n)?.toArray() as ArrayLike<number | bigint>, Number)]));
  for (const t of got.values()) t.dispose();
  return out;
}
