/**
 * Loss scaling against hand-written traces of DeepSpeed's rules (deepspeed/runtime/fp16/loss_scaler.py,
 * DynamicLossScaler.update_scale), and the inf/NaN check on f32, bf16 and f16 gradients.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig } from '../../src/engine/config.ts';
import { createLossScaler, DynamicLossScaler, StaticLossScaler } from '../../src/engine/loss_scaler.ts';
import { hasOverflow } from '../../src/engine/overflow.ts';
import { tensor } from '../../src/index.ts';

/** Feeds the pattern (O overflow, C clean) and records [scale, hysteresis] after each update. */
function run(scaler: DynamicLossScaler, pattern: string): [number, number][] {
  return [...pattern].map((c) => {
    scaler.update(c === 'O');
    return [scaler.lossScale, scaler.curHysteresis];
  });
}

// Trace (init 16, window 3, hysteresis 2), iteration by iteration:
//  0 O: hysteresis 2 -> 1, scale stays 16          6 C: (6-4) % 3 = 2
//  1 O: hysteresis 1: scale 16 -> 8, last = 1       7 C: (7-4) % 3 = 0: refill hysteresis 2, scale 8
//  2 C: (2-1) % 3 = 1                               8 O: hysteresis 2 -> 1, scale 8
//  3 C: (3-1) % 3 = 2                               9 C: (9-8) % 3 = 1
//  4 O: hysteresis still 1 (no window passed): 4   10 O: hysteresis 1: scale 8 -> 4
//  5 C: (5-4) % 3 = 1
test('dynamic scaling with hysteresis 2: skip, delayed halving, window doubling (DeepSpeed trace)', () => {
  const s = new DynamicLossScaler({ initScale: 16, scaleWindow: 3, delayedShift: 2 });
  assert.equal(run(s, 'OOCCOCCCOCO'), [
    [16, 1], [8, 1], [8, 1], [8, 1], [4, 1], [4, 1], [4, 1], [8, 2], [8, 1], [8, 1], [4, 1],
  ]);
  assert.equal(s.stateDict(), { curScale: 4, curIter: 11, lastOverflowIter: 10, curHysteresis: 1 });
});

// Same pattern with consecutive_hysteresis: every clean iteration refills the hysteresis to 2,
// so an isolated overflow only spends it; the window doubling at 7 does not touch it.
test('dynamic scaling with consecutive_hysteresis (DeepSpeed trace)', () => {
  const s = new DynamicLossScaler({ initScale: 16, scaleWindow: 3, delayedShift: 2, consecutiveHysteresis: true });
  assert.equal(run(s, 'OOCCOCCCOCO'), [
    [16, 1], [8, 1], [8, 2], [8, 2], [8, 1], [8, 2], [8, 2], [16, 2], [16, 1], [16, 2], [16, 1],
  ]);
});

test('the scale doubles after each window of clean iterations from the start ((iter + 1) % window)', () => {
  const s = new DynamicLossScaler({ initScale: 1, scaleWindow: 3 });
  assert.equal(run(s, 'CCCCCCC').map(([scale]) => scale), [1, 1, 2, 2, 2, 4, 4]);
  // An overflow restarts the window: halve at 7, then double 3 clean iterations later (10).
  assert.equal(run(s, 'OCCCC').map(([scale]) => scale), [2, 2, 2, 4, 4]);
});

test('the scale stops at min_loss_scale and an overflow there raises (raise_error_at_min_scale)', () => {
  const s = new DynamicLossScaler({ initScale: 6, minScale: 2, scaleWindow: 100 });
  assert.equal(run(s, 'OO').map(([scale]) => scale), [3, 2]);
  assert.throws(() => s.update(true), /minimum loss scale 2/);
  const quiet = new DynamicLossScaler({ initScale: 2, minScale: 1, raiseErrorAtMinScale: false });
  assert.equal(run(quiet, 'OOO').map(([scale]) => scale), [1, 1, 1]);
  // With hysteresis left, an overflow at the minimum only spends hysteresis (no error yet).
  const h = new DynamicLossScaler({ initScale: 1, minScale: 1, delayedShift: 2 });
  h.update(true);
  assert.is(h.curHysteresis, 1);
  assert.throws(() => h.update(true), /minimum loss scale/);
});

test('defaults are DeepSpeed\'s DynamicLossScaler(): 2^32, window 1000, hysteresis 1; state round-trips', () => {
  const s = new DynamicLossScaler();
  assert.is(s.lossScale, 2 ** 32);
  assert.is(s.scaleWindow, 1000);
  assert.is(s.curHysteresis, 1);
  s.update(true);
  assert.is(s.lossScale, 2 ** 31);
  const t = new DynamicLossScaler();
  t.loadStateDict(s.stateDict());
  assert.equal(t.stateDict(), s.stateDict());
  assert.throws(() => new DynamicLossScaler({ scaleWindo: 5 } as never), /did you mean "scaleWindow"/);
});

test('static scaler and createLossScaler from a resolved config', () => {
  const st = new StaticLossScaler(128);
  st.update(true);
  assert.is(st.lossScale, 128);
  const dyn = createLossScaler(loadConfig({ train_batch_size: 1, fp16: { enabled: true, initial_scale_power: 8, hysteresis: 3 } }).lossScaler);
  assert.ok(dyn instanceof DynamicLossScaler);
  assert.is(dyn.lossScale, 256);
  assert.is((dyn as DynamicLossScaler).curHysteresis, 3);
  assert.is(createLossScaler(loadConfig({ train_batch_size: 1, bf16: { enabled: true } }).lossScaler).lossScale, 1);
  assert.is(createLossScaler(loadConfig({ train_batch_size: 1, fp16: { enabled: true, loss_scale: 64 } }).lossScaler).lossScale, 64);
});

for (const dtype of ['f32', 'bf16', 'f16'] as const) {
  test(`hasOverflow ${dtype}: finite, +inf, -inf, NaN, skipped entries, non-contiguous`, () => {
    const ok = tensor([1, -2, 3, 65000 / 2], { dtype });
    const mk = (bad: number) => tensor([[1, 2, 3], [4, bad, 6]], { dtype });
    assert.is(hasOverflow([ok, null, undefined]), false);
    assert.is(hasOverflow([ok, mk(Number.POSITIVE_INFINITY)]), true);
    assert.is(hasOverflow([mk(Number.NEGATIVE_INFINITY)]), true);
    assert.is(hasOverflow([ok, mk(Number.NaN)]), true);
    assert.is(hasOverflow([mk(Number.NaN).transpose(0, 1)]), true);
    assert.is(hasOverflow([mk(5).transpose(0, 1)]), false);
    assert.is(hasOverflow([]), false);
  });
}

test('hasOverflow: a large finite f32 gradient is not an overflow; f16 values past 65504 are', () => {
  assert.is(hasOverflow([tensor(new Array(1000).fill(3e38), { dtype: 'f32' })]), false);
  assert.is(hasOverflow([tensor([70000], { dtype: 'f16' })]), true); // rounds to inf in f16
});

test.run();
