// Launching fixtures/pipeline.ts and checking its RESULT lines (shared by the pipeline test files).
// Tolerances, f32 GPT-tiny, AdamW lr 1e-2, 3 steps of 4 micro-batches, clipping at 0.5 (active):
// per-step mean losses within 1e-6 relative of single-process training on the same micro-batches
// (measured: equal); gradient norms within 1e-6 relative (measured ~1e-8); weights within 1e-5 of
// max(1, |w|) (measured ~2e-7); GPT's attention key bias, whose true gradient is exactly zero so
// Adam normalizes rounding noise, within 1e-4 (measured ~4e-6), as zero.test.ts.
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

export interface Result {
  case: string;
  rank: number;
  pp: number;
  dp: number;
  [k: string]: unknown;
}

export async function runPipeline(pp: number, dp: number, cases: string[]): Promise<Result[]> {
  const r = await runLauncher(['--num_procs', String(pp * dp), '--no_local_rank'], 'pipeline.ts', [String(pp), String(dp), cases.join(','), '3', '4', '0.5'], { timeoutMs: 55_000 });
  expectExit(r, 0, `pipeline pp=${pp} dp=${dp}`);
  return [...r.stdout.matchAll(/^\[rank \d+\] RESULT (.*)$/gm)].map((m) => JSON.parse(m[1]) as Result);
}

export function checkTraining(results: Result[], what: string, ranks: number): void {
  const mine = results.filter((r) => r.case === what);
  assert.is(mine.length, ranks, `${what}: every rank reported`);
  for (const r of mine) {
    const at = `${what} rank ${r.rank}`;
    assert.ok(r.initExact, `${at}: initial weights equal the plain GPT's bit for bit`);
    assert.ok((r.lossRel as number) <= 1e-6, `${at}: losses ${r.losses} vs ${r.refLosses} (rel ${r.lossRel})`);
    assert.ok((r.normRel as number) <= 1e-6, `${at}: gradient norms (rel ${r.normRel})`);
    assert.ok((r.refNorms as number[]).some((n) => n > 0.5), `${at}: clipping at 0.5 was active (${r.refNorms})`);
    assert.ok((r.weightAbs as number) <= 1e-5, `${at}: weights within 1e-5 (got ${r.weightAbs} at ${r.worst})`);
    assert.ok((r.keyBiasAbs as number) <= 1e-4, `${at}: attention key bias within 1e-4 (got ${r.keyBiasAbs})`);
    assert.is(r.timeline, r.schedule, `${at}: every action of the rank's list is in the measured timeline`);
    const mb = r.measuredBubble as number;
    assert.ok(mb > 0 && mb < 1, `${at}: measured bubble ${mb} in (0, 1)`);
    assert.is(r.svgActions, r.svgWant, `${at}: the measured SVG draws every rank's compute actions`);
    if (what === 'zb-h1' || what === 'zero3-zb') assert.is((r.wJobs as number) > 0, (r.linears as number) > 0, `${at}: W actions computed the deferred weight gradients of its ${r.linears} linears`);
    else assert.is(r.wJobs, 0, `${at}: no deferred weight gradients without a split backward`);
  }
  // Each rank built only its own layers: together, GPT's parameters once plus the head's tied copy (per dp replica).
  const replicas = new Set(mine.map((r) => r.dp)).size;
  const total = mine.reduce((n, r) => n + (r.numParams as number), 0);
  assert.is(total, replicas * ((mine[0].gptParams as number) + (mine[0].tiedNumel as number)), `${what}: parameters over all ranks`);
  const tied = mine.filter((r) => r.tiedHash !== null).map((r) => r.tiedHash);
  assert.ok(tied.length >= 2, `${what}: the tied embedding/head weight lives on two pipeline ranks`);
  assert.is(new Set(tied).size, 1, `${what}: tied weights identical on every stage holding them (${tied})`);
}

/**
 * Issue 6 (plain dp and ZeRO-1/2 over dp, m micro-batches): every dp collective of each trainBatch
 * comes after the batch's last pipeline send/recv, and their number per batch is the same as a
 * 1-micro-batch engine's; with plain dp it is exactly one all-reduce per parameter of the stage
 * (and one for the mean loss).
 */
export function checkDpOncePerStep(results: Result[], what: string): void {
  for (const r of results.filter((x) => x.case === what)) {
    const at = `${what} rank ${r.rank}`;
    const steps = r.dpSteps as { count: number; afterLastMicroBatch: boolean }[];
    assert.ok(steps && steps.length > 0, `${at}: dp ops counted`);
    for (const [s, d] of steps.entries()) {
      assert.ok(d.count > 0, `${at} step ${s}: gradients reduced over dp`);
      assert.ok(d.afterLastMicroBatch, `${at} step ${s}: no dp collective before the last micro-batch's send/recv`);
      assert.is(d.count, r.dpOpsOne, `${at} step ${s}: ${d.count} dp ops with 4 micro-batches vs ${r.dpOpsOne} with 1`);
    }
    // Plus one: the batch's mean loss averaged over dp (reportLoss).
    if (what === '1f1b') assert.is(steps[0].count, (r.stageParams as number) + 1, `${at}: one all-reduce per parameter and the loss's`);
  }
}
