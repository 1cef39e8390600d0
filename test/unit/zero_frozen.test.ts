/**
 * splitTrainable (src/zero/frozen.ts), which decides what ZeRO stages 1-3 train: a set or a
 * predicate selects, requiresGrad false always freezes, and bad input (a tensor that is not a
 * parameter, a non-iterable, nothing left to train) is an error naming the caller.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { tensor } from '../../src/index.ts';
import type { Tensor } from '../../src/tensor/tensor.ts';
import { splitTrainable } from '../../src/zero/frozen.ts';

function params(): [string, Tensor][] {
  return ['a', 'b', 'c'].map((n) => [n, tensor([1, 2], { requiresGrad: true })]);
}
const names = (l: [string, Tensor][]) => l.map(([n]) => n);

test('default, set and predicate select; requiresGrad false freezes', () => {
  const named = params();
  let s = splitTrainable(named, undefined, 'Z');
  assert.equal([names(s.trained), names(s.frozen)], [['a', 'b', 'c'], []]);
  s = splitTrainable(named, new Set([named[0][1], named[2][1]]), 'Z');
  assert.equal([names(s.trained), names(s.frozen)], [['a', 'c'], ['b']]);
  s = splitTrainable(named, (n) => n !== 'a', 'Z');
  assert.equal([names(s.trained), names(s.frozen)], [['b', 'c'], ['a']]);
  named[1][1].requiresGrad_(false);
  s = splitTrainable(named, [named[1][1], named[2][1]], 'Z');
  assert.equal([names(s.trained), names(s.frozen)], [['c'], ['a', 'b']]);
});

test('bad input names the caller', () => {
  const named = params();
  assert.throws(() => splitTrainable(named, [tensor([1])], 'ZeroStage12'), /ZeroStage12: trainable holds 1 tensor\(s\) that are not parameters of the model/);
  assert.throws(() => splitTrainable(named, 3 as never, 'ZeroStage3'), /ZeroStage3: trainable must be an iterable of parameters or a function/);
  assert.throws(() => splitTrainable(named, () => false, 'ZeroStage3'), /ZeroStage3: no parameter trains/);
});

test.run();
