// Frozen parameters at ZeRO stages 1, 2 and 3 on 2 real ranks (fixtures/engine_frozen.ts): GPT tiny
// with wte and wpe frozen through modelParameters and, separately, through requiresGrad_(false),
// accumulation 2 and clipping. Per-step losses and final weights equal single-process AdamW over
// the same subset (losses 1e-5 relative, measured 3e-8; weights 1e-4, measured 2.4e-5 at one element
// whose tiny gradient Adam normalizes, so rounding moves it by a fraction of lr 1e-2; attention key
// bias 1e-4);
// the frozen weights equal rank 0's initial ones bit for bit on both ranks; the optimizer's bytes
// are Adam's 8 per trained element of this rank's partition and the memory report's Ψ counts the
// trained elements only; stage 3 still partitions the frozen weights (the report's frozen buffer is
// this rank's shards; reading one outside gathered() throws); a fresh engine loading the checkpoint
// has every weight bit for bit. Variants of the 'subset' run: offload_optimizer cpu at stage 2 equals
// the stage-2 run without offload bit for bit (losses and final weights); bf16 (config bf16, bf16
// model) at stage 3 vs bf16 at stage 2, losses within 1e-3 relative (measured: identical); both
// keep the frozen weights bit for bit and round-trip a checkpoint.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'mt-engine-frozen-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

interface Result {
  mode: string; stage: number; lossRel: number; weightAbs: number; worst: string; keyBiasAbs: number; frozenSame: boolean; refFrozenHash: string;
  trained: number; optimBytes: number; optimExpected: number; psi: number; frozenGrads: number; loaded: { same: boolean; steps: number };
  frozenPartition: { bytes: number; expected: number; readThrows: boolean } | null;
}
interface Variant {
  name: string; stage: number; losses: number[]; baseLosses: number[]; weightsSame: boolean; frozenSame: boolean; refFrozenHash: string; dtype: string;
  loaded: { same: boolean; steps: number };
}

test('initialize: frozen embeddings (modelParameters / requiresGrad false) at stages 1-3 equal one process; checkpoint round trip; cpu offload and bf16', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'engine_frozen.ts', [tmp], { timeoutMs: 120_000 });
  expectExit(r, 0, 'engine frozen on 2 ranks');
  const results = [...r.stdout.matchAll(/^\[rank 0\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]) as Result);
  const frozen = [...r.stdout.matchAll(/^\[rank 1\] FROZEN (\S+) (\d) (\S+)$/gm)];
  assert.is(results.length, 6, 'six runs reported');
  assert.is(frozen.length, 6, 'rank 1 reported six runs');
  for (const [i, c] of results.entries()) {
    const what = `${c.mode} stage ${c.stage}`;
    assert.ok(c.lossRel <= 1e-5, `${what}: losses within 1e-5 relative (got ${c.lossRel})`);
    assert.ok(c.weightAbs <= 1e-4, `${what}: weights within 1e-4 (got ${c.weightAbs} at ${c.worst})`);
    assert.ok(c.keyBiasAbs <= 1e-4, `${what}: attention key bias within 1e-4 (got ${c.keyBiasAbs})`);
    assert.ok(c.frozenSame, `${what}: rank 0's frozen weights unchanged bit for bit`);
    assert.is(frozen[i][3], c.refFrozenHash, `${what}: rank 1's frozen weights are rank 0's initial ones bit for bit`);
    assert.is(c.optimBytes, c.optimExpected, `${what}: optimizer bytes = 8 x this rank's share of the ${c.trained} trained elements`);
    assert.is(c.psi, c.trained, `${what}: the memory report's Ψ is the trained elements`);
    assert.is(c.frozenGrads, 0, `${what}: no gradient kept for frozen parameters`);
    assert.ok(c.loaded.same, `${what}: a fresh engine loading the checkpoint has every weight bit for bit`);
    assert.is(c.loaded.steps, 3, `${what}: global steps restored`);
    if (c.stage === 3) {
      const f = c.frozenPartition as NonNullable<Result['frozenPartition']>;
      assert.is(f.bytes, f.expected, `${what}: the frozen weights held are this rank's shards`);
      assert.ok(f.readThrows, `${what}: a frozen weight is released outside gathered()`);
    }
  }
  // Variants (fixture's VARIANT lines): offload_optimizer cpu at stage 2 vs the plain stage-2 run, bit for bit;
  // bf16 at stage 3 vs bf16 at stage 2 within 1e-3 relative (as zero3_precision.test.ts).
  const variants = [...r.stdout.matchAll(/^\[rank 0\] VARIANT (.*)$/gm)].map((m) => JSON.parse(m[1]) as Variant);
  const vfrozen = [...r.stdout.matchAll(/^\[rank 1\] VFROZEN (\S+) (\S+)$/gm)];
  assert.is(variants.length, 3, 'three variant runs reported');
  assert.is(vfrozen.length, 3, 'rank 1 reported three variant runs');
  for (const [i, v] of variants.entries()) {
    const what = `${v.name} stage ${v.stage}`;
    assert.ok(v.frozenSame, `${what}: rank 0's frozen weights unchanged bit for bit`);
    assert.is(vfrozen[i][2], v.refFrozenHash, `${what}: rank 1's frozen weights are rank 0's initial ones bit for bit`);
    assert.ok(v.loaded.same && v.loaded.steps === 3, `${what}: checkpoint round trip bit for bit`);
    assert.is(v.baseLosses.length, 3, `${what}: base run's losses`);
    if (v.name === 'offload-cpu') {
      assert.equal(v.losses, v.baseLosses, `${what}: losses equal the run without offload bit for bit`);
      assert.ok(v.weightsSame, `${what}: final weights equal the run without offload bit for bit`);
    } else {
      assert.is(v.dtype, 'bf16', `${what}: the weights stayed bf16`);
      v.losses.forEach((l, s) => assert.ok(Math.abs(l - v.baseLosses[s]) <= 1e-3 * Math.abs(v.baseLosses[s]), `${what}: step ${s} loss ${l} vs bf16 stage 2 ${v.baseLosses[s]}`));
    }
  }
});

test.run();
