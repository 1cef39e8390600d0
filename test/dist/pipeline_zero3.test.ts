// ZeRO stage 3 under a pipeline, pp 2 × dp 2 (fixtures/pipeline_zero3.ts): an f32 MLP with 1F1B,
// interleaved (2 stages per rank) and ZB-H1 (W's weight gradients reduce-scattered by W) equals one process training on every replica's micro-batches —
// losses and global gradient norms (clipping at 0.2, over every stage) within 1e-6 relative
// (measured ~2.5e-8), weights within 1e-5 of max(1, |w|) (measured ~3e-6) — while each rank holds
// half of its stage's parameter bytes (its shards) plus the small persistent ones.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

test('pipeline x ZeRO-3: 1F1B, interleaved and ZB-H1 equal one process, parameters partitioned over dp', async () => {
  const r = await runLauncher(['--num_procs', '4', '--no_local_rank'], 'pipeline_zero3.ts', ['1f1b,interleaved,zb-h1'], { timeoutMs: 55_000 });
  expectExit(r, 0, 'pipeline zero3 on 4 ranks');
  const rs = [...r.stdout.matchAll(/^\[rank \d\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]));
  assert.is(rs.length, 12);
  for (const x of rs) {
    const at = `${x.schedule} rank ${x.rank}`;
    assert.is(x.stage, 3);
    assert.ok(x.lossRel <= 1e-6, `${at}: losses ${x.losses} vs ${x.refLosses}`);
    assert.ok(x.normRel <= 1e-6, `${at}: gradient norms (rel ${x.normRel})`);
    assert.ok(x.refNorms.some((n: number) => n > 0.2), `${at}: clipping at 0.2 was active (${x.refNorms})`);
    assert.ok(x.weightAbs <= 1e-5, `${at}: weights within 1e-5 (got ${x.weightAbs})`);
    assert.ok(x.paramBytes >= x.fullParamBytes / 2 && x.paramBytes <= x.fullParamBytes / 2 + 4096, `${at}: ${x.paramBytes} parameter bytes for a stage of ${x.fullParamBytes}`);
  }
  assert.equal([...new Set(rs.filter((x) => x.schedule === 'interleaved').map((x) => x.stages.length))], [2], 'interleaved: two stages per rank');
});

test.run();
