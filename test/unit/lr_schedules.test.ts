/**
 * LR schedules against DeepSpeed's formulas (deepspeed/runtime/lr_schedules.py), written out
 * below from its source, at chosen steps; the config factory and its errors.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  AdamW, createLrScheduler, LRRangeTest, type LRScheduler, OneCycle, SGD, tensor, WarmupCosineLR, WarmupDecayLR, WarmupLR,
} from '../../src/index.ts';

/** Stand-in optimizers: the schedules only read and write the groups. */
const adamLike = (lrs: number[]) => ({ paramGroups: lrs.map((lr) => ({ lr, betas: [0.9, 0.999] as [number, number] })) });
const sgdLike = (lrs: number[]) => ({ paramGroups: lrs.map((lr) => ({ lr })) });

function near(have: number, want: number, what: string): void {
  assert.ok(Math.abs(have - want) <= 1e-15 * Math.max(1, Math.abs(want)), `${what}: ${have} vs ${want}`);
}

/** Steps `s` to each `at` (in increasing order) and checks the groups' lr against `want(t)`. */
function checkAt(s: LRScheduler, at: number[], want: (t: number) => number[], name: string): void {
  for (const t of at) {
    while (s.lastBatchIteration < t) s.step();
    const lrs = s.optimizer.paramGroups.map((g) => g.lr);
    want(t).forEach((w, i) => near(lrs[i], w, `${name} t=${t} group ${i}`));
    assert.equal(s.getLastLr(), lrs);
  }
}

// DeepSpeed WarmupLR / WarmupDecayLR: warmup_num_steps = max(2, n); before the first step the
// lr is min_lr; gamma = log(t + 1) / log(w) ('log') or t / w ('linear') while t < w, else 1
// (WarmupLR) or max(0, (total - t) / max(1, total - w)) (WarmupDecayLR); lr = min + (max - min) * gamma.
function dsWarmup(t: number, min: number, max: number, n: number, type: string, total?: number): number {
  const w = Math.max(2, n);
  if (t < 0) return min;
  let gamma: number;
  if (t < w) gamma = type === 'log' ? (1 / Math.log(w)) * Math.log(t + 1) : t / w;
  else gamma = total === undefined ? 1 : Math.max(0, (total - t) / Math.max(1, total - w));
  return min + (max - min) * gamma;
}

test('WarmupLR: log and linear warmup, then constant; lr set at construction', () => {
  for (const type of ['log', 'linear'] as const) {
    const opt = adamLike([0.5]);
    const s = new WarmupLR(opt, { warmup_min_lr: 1e-5, warmup_max_lr: 1e-3, warmup_num_steps: 10, warmup_type: type });
    near(opt.paramGroups[0].lr, 1e-5, 'before the first step');
    assert.is(s.lastBatchIteration, -1);
    checkAt(s, [0, 1, 4, 9, 10, 11, 50], (t) => [dsWarmup(t, 1e-5, 1e-3, 10, type)], `WarmupLR ${type}`);
  }
  // Chosen values: linear warmup halfway is the midpoint; log warmup at t = w - 1 reaches the max.
  const lin = new WarmupLR(adamLike([0]), { warmup_max_lr: 1e-3, warmup_num_steps: 10, warmup_type: 'linear' });
  lin.step(5);
  near(lin.getLastLr()[0], 5e-4, 'linear t=5');
  const log = new WarmupLR(adamLike([0]), { warmup_max_lr: 1e-3, warmup_num_steps: 10 });
  log.step(9);
  near(log.getLastLr()[0], 1e-3, 'log t=9');
  // Defaults (0 → 0.001 over 1000 log steps), a warmup of 0 or 1 steps counts as 2, per-group lists.
  checkAt(new WarmupLR(adamLike([1])), [0, 999, 1000], (t) => [dsWarmup(t, 0, 0.001, 1000, 'log')], 'defaults');
  checkAt(new WarmupLR(adamLike([1]), { warmup_num_steps: 0 }), [0, 1, 2], (t) => [dsWarmup(t, 0, 0.001, 0, 'log')], 'n=0');
  const two = new WarmupLR(adamLike([1, 1]), { warmup_min_lr: [0, 1e-4], warmup_max_lr: [1e-3, 2e-3], warmup_num_steps: 4, warmup_type: 'linear' });
  checkAt(two, [0, 2, 5], (t) => [dsWarmup(t, 0, 1e-3, 4, 'linear'), dsWarmup(t, 1e-4, 2e-3, 4, 'linear')], 'per group');
});

test('WarmupDecayLR: warmup, then linear decay reaching 0 at total_num_steps', () => {
  for (const type of ['log', 'linear'] as const) {
    const s = new WarmupDecayLR(adamLike([1]), { total_num_steps: 100, warmup_min_lr: 1e-4, warmup_max_lr: 1e-2, warmup_num_steps: 20, warmup_type: type });
    checkAt(s, [0, 10, 19, 20, 21, 60, 99, 100, 150], (t) => [dsWarmup(t, 1e-4, 1e-2, 20, type, 100)], `WarmupDecayLR ${type}`);
  }
  const s = new WarmupDecayLR(adamLike([1]), { total_num_steps: 30, warmup_max_lr: 1, warmup_num_steps: 10 });
  s.step(20);
  near(s.getLastLr()[0], 0.5, 'halfway through the decay');
});

// DeepSpeed WarmupCosineLR: org_lr = the optimizer's lr at construction; before the first step
// the lr is 0; while t < w: ratio = warmup_min_ratio + f * (1 - warmup_min_ratio) with f as above;
// then ratio = max(0, cos_min_ratio + (1 - cos_min_ratio) * (1 + cos(pi * (t - w + 1) / (total - w))) / 2).
function dsCosine(t: number, org: number, total: number, wmin: number, n: number, cmin: number, type: string): number {
  const w = Math.max(2, n);
  if (t < 0) return 0;
  let ratio: number;
  if (t < w) {
    const f = type === 'log' ? (1 / Math.log(w)) * Math.log(t + 1) : t / w;
    ratio = wmin + f * (1 - wmin);
  } else {
    const c = (1 + Math.cos((Math.PI * (t - w + 1)) / (total - w))) / 2;
    ratio = Math.max(0, cmin + (1 - cmin) * c);
  }
  return org * ratio;
}

test('WarmupCosineLR: ratio of the optimizer lr, 0 before the first step, warmup then cosine', () => {
  for (const type of ['log', 'linear'] as const) {
    const opt = adamLike([6e-4, 1e-3]);
    const s = new WarmupCosineLR(opt, { total_num_steps: 50, warmup_min_ratio: 0.1, warmup_num_steps: 10, cos_min_ratio: 0.05, warmup_type: type });
    assert.equal(opt.paramGroups.map((g) => g.lr), [0, 0]);
    checkAt(s, [0, 5, 9, 10, 30, 48, 49, 60], (t) => [6e-4, 1e-3].map((o) => dsCosine(t, o, 50, 0.1, 10, 0.05, type)), `WarmupCosineLR ${type}`);
  }
  // Chosen value: at t = total - 1 the ratio is cos_min_ratio.
  const s = new WarmupCosineLR(adamLike([1]), { total_num_steps: 20, warmup_num_steps: 4, cos_min_ratio: 0.01 });
  s.step(19);
  near(s.getLastLr()[0], 0.01, 't = total - 1');
  // Defaults: warmup_min_ratio 0, warmup 1000 log steps, cos_min_ratio 1e-4.
  checkAt(new WarmupCosineLR(adamLike([1]), { total_num_steps: 2000 }), [0, 500, 1500], (t) => [dsCosine(t, 1, 2000, 0, 1000, 1e-4, 'log')], 'defaults');
});

// DeepSpeed OneCycle: total = first + second; ratio = first / total; at t, b = t + 1,
// cycle = floor(1 + b / total), x = 1 + b / total - cycle, scale = x <= ratio ? x / ratio : (x - 1) / (ratio - 1);
// in the cycle (t < total): lr = min + (max - min) * scale, beta1 = max_mom - (max_mom - min_mom) * scale;
// after it, with decay: k = (t - total + 1) / decay_step_size, lr = min / (1 + decay_lr_rate * k),
// beta1 = max_mom * (1 + decay_mom_rate * k); without decay lr = min, beta1 = max_mom. beta2 = 0.99.
function dsOneCycle(t: number, o: { min: number; max: number; first: number; second: number; decayStep: number; lrRate: number; minMom: number; maxMom: number; momRate: number }) {
  const total = o.first + o.second;
  const ratio = o.first / total;
  if (t < total) {
    const b = t + 1;
    const cycle = Math.floor(1 + b / total);
    const x = 1 + b / total - cycle;
    const scale = x <= ratio ? x / ratio : (x - 1) / (ratio - 1);
    return { lr: o.min + (o.max - o.min) * scale, mom: o.maxMom - (o.maxMom - o.minMom) * scale };
  }
  const k = (t - total + 1) / o.decayStep;
  return {
    lr: o.decayStep === 0 || o.lrRate === 0 ? o.min : o.min / (1 + o.lrRate * k),
    mom: o.decayStep === 0 || o.momRate === 0 ? o.maxMom : o.maxMom * (1 + o.momRate * k),
  };
}

test('OneCycle: triangular lr and inverse momentum cycle, then decay', () => {
  const o = { min: 1e-4, max: 1e-3, first: 10, second: 6, decayStep: 4, lrRate: 0.5, minMom: 0.85, maxMom: 0.95, momRate: 0.01 };
  const opt = adamLike([1, 2]);
  const s = new OneCycle(opt, {
    cycle_min_lr: o.min, cycle_max_lr: o.max, cycle_first_step_size: o.first, cycle_second_step_size: o.second, decay_step_size: o.decayStep,
    decay_lr_rate: o.lrRate, cycle_min_mom: o.minMom, cycle_max_mom: o.maxMom, decay_mom_rate: o.momRate,
  });
  assert.equal(opt.paramGroups.map((g) => [g.lr, ...g.betas]), [[o.min, o.minMom, 0.99], [o.min, o.minMom, 0.99]], 'at construction');
  for (const t of [0, 4, 9, 10, 12, 15, 16, 17, 25, 40]) {
    while (s.lastBatchIteration < t) s.step();
    const want = dsOneCycle(t, o);
    for (const g of opt.paramGroups) {
      near(g.lr, want.lr, `OneCycle lr t=${t}`);
      near(g.betas[0], want.mom, `OneCycle beta1 t=${t}`);
      assert.is(g.betas[1], 0.99);
    }
  }
  // Chosen value: the peak is reached at t = first - 1.
  const peak = new OneCycle(adamLike([1]), { cycle_min_lr: 0.1, cycle_max_lr: 1, cycle_first_step_size: 5 });
  peak.step(4);
  near(peak.getLastLr()[0], 1, 'peak');
  // No decay configured (the default): lr stays at cycle_min_lr after the cycle.
  const flat = new OneCycle(adamLike([1]), { cycle_min_lr: 0.1, cycle_max_lr: 1, cycle_first_step_size: 5 });
  flat.step(30);
  near(flat.getLastLr()[0], 0.1, 'after the cycle');
});

test('OneCycle with SGD: momentum cycling is disabled with a warning, as in DeepSpeed', () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  const original = process.emitWarning;
  process.emitWarning = ((msg: string) => onWarning(new Error(msg))) as typeof process.emitWarning;
  try {
    const p = tensor([1], { requiresGrad: true });
    const opt = new SGD([p], { lr: 0.1, momentum: 0.9 });
    const s = new OneCycle(opt, { cycle_min_lr: 0.01, cycle_max_lr: 0.1, cycle_first_step_size: 4, cycle_first_stair_count: 2 });
    s.step();
    assert.is(s.cycleMomentum, false);
    assert.is(s.getMom(), null);
    assert.is(opt.paramGroups[0].momentum, 0.9);
    assert.ok(warnings.some((w) => /cycle_first_stair_count has no effect/.test(w)), warnings.join('\n'));
    assert.ok(warnings.some((w) => /cycle_momentum is disabled/.test(w)), warnings.join('\n'));
    p.dispose();
  } finally {
    process.emitWarning = original;
  }
});

test('LRRangeTest: continuous and staircase growth', () => {
  for (const staircase of [false, true]) {
    const s = new LRRangeTest(sgdLike([1]), { lr_range_test_min_lr: 1e-4, lr_range_test_step_size: 3, lr_range_test_step_rate: 2, lr_range_test_staircase: staircase });
    // DeepSpeed: lr = min * (1 + rate * i), i = (t + 1) / size, floored when staircase.
    checkAt(s, [-1, 0, 1, 2, 5, 10], (t) => {
      const i = (t + 1) / 3;
      return [1e-4 * (1 + 2 * (staircase ? Math.floor(i) : i))];
    }, `LRRangeTest staircase=${staircase}`);
  }
});

test('schedules drive a real optimizer; stateDict and step(batchIteration) resume the position', () => {
  const p = tensor([1, 2], { requiresGrad: true });
  const opt = new AdamW([{ params: [p] }], { lr: 1e-3 });
  const s = createLrScheduler(opt, { type: 'WarmupCosineLR', params: { total_num_steps: 20, warmup_num_steps: 5, warmup_type: 'linear' } });
  for (let t = 0; t < 7; t++) s.step();
  const sd = structuredClone(s.stateDict());
  const again = new WarmupCosineLR(adamLike([5]), { total_num_steps: 20, warmup_num_steps: 5, warmup_type: 'linear' });
  again.loadStateDict(sd);
  assert.equal(again.baseLrs, [1e-3]);
  for (let t = 0; t < 3; t++) {
    s.step();
    again.step();
  }
  assert.is(again.getLastLr()[0], s.getLastLr()[0]);
  assert.is(opt.paramGroups[0].lr, s.getLastLr()[0]);
  s.step(3);
  near(opt.paramGroups[0].lr, dsCosine(3, 1e-3, 20, 0, 5, 1e-4, 'linear'), 'step(3)');
  const resumed = new WarmupLR(adamLike([0.7]), { warmup_max_lr: 1, warmup_num_steps: 10, last_batch_iteration: 4 });
  assert.is(resumed.optimizer.paramGroups[0].lr, 0.7, 'a resumed schedule leaves the lr until its next step');
  resumed.step();
  near(resumed.getLastLr()[0], dsWarmup(5, 0, 1, 10, 'log'), 'resumed');
  p.dispose();
});

test('createLrScheduler: every type by name; unknown types and keys name the closest valid one', () => {
  const o = () => adamLike([1]);
  assert.ok(createLrScheduler(o(), { type: 'WarmupLR', params: {} }) instanceof WarmupLR);
  assert.ok(createLrScheduler(o(), { type: 'WarmupDecayLR', params: { total_num_steps: 10, warmup_num_steps: 2 } }) instanceof WarmupDecayLR);
  assert.ok(createLrScheduler(o(), { type: 'OneCycle', params: { cycle_min_lr: 0, cycle_max_lr: 1 } }) instanceof OneCycle);
  assert.ok(createLrScheduler(o(), { type: 'LRRangeTest', params: {} }) instanceof LRRangeTest);
  const bad: [object, RegExp][] = [
    [{ type: 'WarmupCosine', params: {} }, /unknown type "WarmupCosine" \(did you mean "WarmupCosineLR"\?\)/],
    [{ type: 'Cosine' }, /unknown type "Cosine"/],
    [{ type: 'WarmupLR', param: {} }, /scheduler: unknown key "param" \(did you mean "params"\?\)/],
    [{ type: 'WarmupLR', params: { warmup_max: 1 } }, /WarmupLR params: unknown key "warmup_max" \(did you mean "warmup_max_lr"\?\)/],
    [{ type: 'WarmupLR', params: { warmup_num_step: 1 } }, /unknown key "warmup_num_step" \(did you mean "warmup_num_steps"\?\)/],
    [{ type: 'WarmupLR', params: { total_num_steps: 10 } }, /WarmupLR params: unknown key "total_num_steps"/],
    [{ type: 'OneCycle', params: { cycle_min_lr: 0, cycle_max_lr: 1, cycle_max_mon: 0.9 } }, /did you mean "cycle_max_mom"/],
    [{ type: 'WarmupLR', params: { warmup_max_lr: Number.NaN } }, /warmup_max_lr must be a finite number, got NaN/],
    [{ type: 'WarmupLR', params: { warmup_max_lr: Number.POSITIVE_INFINITY } }, /warmup_max_lr must be a finite number, got Infinity/],
    [{ type: 'WarmupLR', params: { warmup_min_lr: -1 } }, /warmup_min_lr must be >= 0, got -1/],
    [{ type: 'WarmupLR', params: { warmup_num_steps: 2.5 } }, /warmup_num_steps must be an integer >= 0, got 2.5/],
    [{ type: 'WarmupLR', params: { warmup_type: 'cosine' } }, /warmup_type must be one of "log", "linear", got "cosine"/],
    [{ type: 'WarmupLR', params: { warmup_max_lr: [1, 2] } }, /warmup_max_lr has 2 values; the optimizer has 1 param groups/],
    [{ type: 'WarmupLR', params: { warmup_max_lr: '1e-3' } }, /warmup_max_lr must be a finite number, got "1e-3"/],
    [{ type: 'WarmupDecayLR', params: {} }, /WarmupDecayLR: total_num_steps is required/],
    [{ type: 'WarmupDecayLR', params: { total_num_steps: 5, warmup_num_steps: 10 } }, /total_num_steps \(5\) is less than warmup_num_steps \(10/],
    [{ type: 'WarmupCosineLR', params: { total_num_steps: 10, warmup_num_steps: 10 } }, /total_num_steps \(10\) must exceed warmup_num_steps \(10/],
    [{ type: 'WarmupCosineLR', params: { total_num_steps: 100, cos_min_ratio: 1.5 } }, /cos_min_ratio must be in \[0, 1\], got 1.5/],
    [{ type: 'OneCycle', params: { cycle_max_lr: 1 } }, /OneCycle: cycle_min_lr is required/],
    [{ type: 'OneCycle', params: { cycle_min_lr: 0, cycle_max_lr: 1, cycle_first_step_size: 0 } }, /cycle_first_step_size must be an integer >= 1, got 0/],
    [{ type: 'OneCycle', params: { cycle_min_lr: 0, cycle_max_lr: 1, cycle_momentum: 'yes' } }, /cycle_momentum must be true or false/],
    [{ type: 'WarmupLR', params: { last_batch_iteration: -2 } }, /last_batch_iteration must be an integer >= -1/],
  ];
  for (const [config, message] of bad) {
    const opt = o();
    assert.throws(() => createLrScheduler(opt, config as never), message, JSON.stringify(config));
    assert.is(opt.paramGroups[0].lr, 1, 'a rejected config changes nothing');
  }
});

test.run();
