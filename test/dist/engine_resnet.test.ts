// initialize() + Engine with a small ResNet (conv, BatchNorm, a strided block with a projection
// shortcut; fixtures/engine_resnet.ts) on 2 and 4 real ranks vs one process: ZeRO stages 0, 1, 2
// and 3, each plain (no accumulation, no clipping), with 2 accumulated micro-batches and clipping 0.5,
// and (stages 1-3) with clipping and offload_optimizer cpu, and stage 2 with overlap_comm true; AdamW,
// 3 steps. GPT tiny has the same matrix in engine.test.ts, zero.test.ts, zero3.test.ts and
// zero_offload.test.ts. Tolerances, f32: per-step losses and gradient norms within 1e-5 relative; final weights within 1e-5 × max(1, |w|);
// every rank's weights identical.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

interface Cmp { lossRel: number; normRel: number; weightAbs: number; worst: string; refNorms: number[]; optimLocation: string }

async function check(np: number): Promise<void> {
  const r = await runLauncher(['--num_procs', String(np)], 'engine_resnet.ts', [], { timeoutMs: 90_000 });
  expectExit(r, 0, `engine resnet on ${np} ranks`);
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  const { world, results } = JSON.parse(m![1]) as { world: number; results: Record<string, Cmp> };
  assert.is(world, np);
  assert.is(Object.keys(results).length, 12, 'four stages × plain and accumulation+clipping, three with offload, stage 2 with overlap_comm');
  for (const [name, c] of Object.entries(results)) {
    const what = `${name} on ${np} ranks`;
    assert.ok(c.lossRel <= 1e-5, `${what}: losses within 1e-5 relative (got ${c.lossRel})`);
    assert.ok(c.normRel <= 1e-5, `${what}: gradient norms within 1e-5 relative (got ${c.normRel})`);
    assert.ok(c.weightAbs <= 1e-5, `${what}: weights within 1e-5 (got ${c.weightAbs} at ${c.worst})`);
    if (name.includes('clip')) assert.ok(c.refNorms.some((v) => v > 0.5), `${what}: clipping at 0.5 was active (${c.refNorms})`);
    assert.is(c.optimLocation, name.includes('offload') ? 'cpu-offload' : 'device', `${what}: optimizer state location`);
    const hashes = [...r.stdout.matchAll(new RegExp(`^\\[rank \\d\\] HASH ${name} (\\S+)$`, 'gm'))].map((x) => x[1]);
    assert.is(hashes.length, np, `${what}: every rank reported`);
    assert.is(new Set(hashes).size, 1, `${what}: identical weights on every rank`);
  }
}

test('initialize: a small ResNet at stages 0-3 on 2 ranks (plain; accumulation 2 + clipping; clipping + offload cpu) equals one process', async () => {
  await check(2);
});

test('initialize: a small ResNet at stages 0-3 on 4 ranks (plain; accumulation 2 + clipping; clipping + offload cpu) equals one process', async () => {
  await check(4);
});

test.run();
