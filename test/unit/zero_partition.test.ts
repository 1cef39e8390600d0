import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { owners, paddedNumel, partition, slotsInRange } from '../../src/zero/index.ts';

test('zero partition: padding to a multiple of the dp size, equal ranges per rank', () => {
  assert.is(paddedNumel(5703, 4), 5704);
  assert.is(paddedNumel(5704, 4), 5704);
  assert.equal(partition(10, 4, 3), { padded: 12, size: 3, rank: 3, world: 4, start: 9, end: 12 });
  assert.throws(() => partition(10, 4, 4), /rank 4/);
});

test('zero partition: the parameter slices in a rank\'s range, and the owners of a bucket', () => {
  const slots = [{ name: 'a', start: 0, end: 5 }, { name: 'b', start: 5, end: 7 }, { name: 'c', start: 7, end: 10 }];
  assert.equal(slotsInRange(slots, 3, 6), [{ name: 'a', lo: 3, hi: 5, paramOffset: 3 }, { name: 'b', lo: 5, hi: 6, paramOffset: 0 }]);
  assert.equal(slotsInRange(slots, 9, 12), [{ name: 'c', lo: 9, hi: 10, paramOffset: 2 }]);
  assert.equal(owners(2, 8, 3), [{ rank: 0, lo: 2, hi: 3 }, { rank: 1, lo: 3, hi: 6 }, { rank: 2, lo: 6, hi: 8 }]);
});

test.run();
