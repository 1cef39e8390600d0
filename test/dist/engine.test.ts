// initialize() + Engine on 2 real ranks (fixtures/engine.ts): ZeRO stages 0, 1, 2 and 3 from a
// DeepSpeed-style config object (train_batch_size 8 = micro 2 x accumulation 2 x dp 2, AdamW,
// WarmupLR, gradient_clipping 1.0), GPT tiny, 4 optimizer steps, against one process training
// on the whole batch with plain AdamW + the same WarmupLR + clipGradNorm. Tolerances, f32:
// per-step losses and gradient norms within 1e-5 relative; learning rates within 1e-12 relative;
// final weights within 1e-5 x max(1, |w|) (measured ~2.5e-7); GPT's attention key bias
// (exact-zero true gradient, Adam normalizes rounding noise) within 1e-4 (measured ~2e-6), as in
// zero.test.ts. Also: offload_optimizer.ratio < 1 and an unknown key are refused with the key path, and
// bf16.enabled with an f32 model is refused naming the parameter.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

interface Cmp {
  lossRel: number;
  lrRel: number;
  normRel: number;
  weightAbs: number;
  worst: string;
  keyBiasAbs: number;
  refNorms: number[];
  refLrs: number[];
  info: {
    globalSteps: number; microSteps: number; lossScale: number; boundaries: boolean[]; printed: number; hasScheduler: boolean; timeLines: number;
    lastWallClock: { steps: number; forwardMs: number; backwardMs: number; stepMs: number };
  };
}

const STEPS = 4;
let out: { stdout: string; results: Record<string, Cmp> } | null = null;

async function runOnce(): Promise<NonNullable<typeof out>> {
  if (out) return out;
  const r = await runLauncher(['--num_procs', '2'], 'engine.ts', [String(STEPS)], { timeoutMs: 60_000 });
  expectExit(r, 0, 'engine on 2 ranks');
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  out = { stdout: r.stdout, results: (JSON.parse(m![1]) as { results: Record<string, Cmp> }).results };
  return out;
}

test('initialize: stages 0, 1, 2, 3 on 2 ranks with accumulation 2, clipping and WarmupLR equal one process on the full batch', async () => {
  const { stdout, results } = await runOnce();
  for (const stage of [0, 1, 2, 3]) {
    const c = results[`stage${stage}`];
    const what = `stage ${stage}`;
    assert.ok(c.lossRel <= 1e-5, `${what}: losses within 1e-5 relative (got ${c.lossRel})`);
    assert.ok(c.normRel <= 1e-5, `${what}: gradient norms within 1e-5 relative (got ${c.normRel})`);
    assert.ok(c.lrRel <= 1e-12, `${what}: learning rates equal the reference schedule (got ${c.lrRel})`);
    assert.ok(c.weightAbs <= 1e-5, `${what}: weights within 1e-5 (got ${c.weightAbs} at ${c.worst})`);
    assert.ok(c.keyBiasAbs <= 1e-4, `${what}: attention key bias within 1e-4 (got ${c.keyBiasAbs})`);
    assert.ok(c.refNorms.some((v) => v > 1.0), `${what}: clipping at 1.0 was active (${c.refNorms})`);
    assert.ok(new Set(c.refLrs).size > 1, `${what}: the warmup changed the lr (${c.refLrs})`);
    const hashes = [...stdout.matchAll(new RegExp(`^\\[rank \\d\\] HASH ${stage} (\\S+)$`, 'gm'))].map((x) => x[1]);
    assert.is(hashes.length, 2, `${what}: both ranks reported`);
    assert.is(new Set(hashes).size, 1, `${what}: identical weights on both ranks`);
  }
});

test('initialize: globalSteps counts optimizer steps, microSteps every step() call; the config is printed once on rank 0; wall_clock_breakdown times each step', async () => {
  const { results } = await runOnce();
  for (const stage of [0, 1, 2, 3]) {
    const { info } = results[`stage${stage}`];
    assert.is(info.globalSteps, STEPS);
    assert.is(info.microSteps, 2 * STEPS);
    assert.equal(info.boundaries, Array.from({ length: 2 * STEPS }, (_, i) => i % 2 === 1));
    assert.is(info.lossScale, 1);
    assert.is(info.printed, 1);
    assert.ok(info.hasScheduler);
    // wall_clock_breakdown without steps_per_print: one timing line per optimizer step on rank 0.
    assert.is(info.timeLines, STEPS, `stage ${stage}: wall_clock_breakdown lines`);
    assert.is(info.lastWallClock.steps, 1);
    for (const k of ['forwardMs', 'backwardMs', 'stepMs'] as const) assert.ok(info.lastWallClock[k] > 0, `stage ${stage}: ${k} > 0`);
  }
});

test('initialize: offload_optimizer.ratio < 1 is refused as not implemented; an unknown key with its path and a suggestion; bf16 needs a bf16 model', async () => {
  const { stdout } = await runOnce();
  const reject = (what: string) => {
    const lines = [...stdout.matchAll(new RegExp(`^\\[rank \\d\\] REJECT ${what} (.*)$`, 'gm'))].map((x) => x[1]);
    assert.is(lines.length, 2, `${what}: both ranks`);
    return lines[0];
  };
  assert.match(reject('offloadRatio'), /zero_optimization\.offload_optimizer\.ratio = 0\.5: not implemented yet/);
  assert.match(reject('unknown'), /zero_optimization\.reduce_bucket_sise: unknown key \(did you mean "reduce_bucket_size"\?\)/);
  assert.match(reject('bf16'), /bf16\.enabled = true needs the model's parameters in bf16 \(build the model with dtype 'bf16'\); parameter "\S+" is f32/);
});

test.run();
