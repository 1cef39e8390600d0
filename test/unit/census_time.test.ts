/**
 * formatCensusTime / censusDeviceTotals (src/tensor/census_time.ts) on hand-made timed entries:
 * the sites by device time with their share of the wall and mean µs per op, the rest summed, the
 * gap between the wall and the op times, ops counted but not timed, and the error for untimed entries.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type CensusEntry, censusDeviceTotals, formatCensusTime } from '../../src/index.ts';

const e = (kind: CensusEntry['kind'], name: string, site: string, count: number, deviceMs: number, timed = count): CensusEntry => ({
  kind, name, site, label: '', count, bytes: 0, threads: 0, deviceMs, timed,
});
const ENTRIES = [
  e('kernel', 'layerNorm', 'cuda/layernorm.cu:150', 4, 0.2),
  e('library', 'cublasLtMatmul bf16', 'cuda/matmul.cc:268', 2, 6),
  e('memcpy', 'stage host to device', 'cuda/pinned_pool.cc:170', 3, 0, 0),
  e('kernel', 'fill', 'cuda/copy.cu:88', 1, 0.05),
  e('malloc', 'cudaMalloc (cache miss)', 'cuda/device_memory.cc:98', 2, 0, 0),
];

test('censusDeviceTotals: op time, timed and untimed device ops (mallocs aside)', () => {
  const t = censusDeviceTotals(ENTRIES);
  assert.ok(Math.abs(t.ms - 6.25) < 1e-12);
  assert.is(t.timed, 7);
  assert.is(t.untimed, 3);
});

test('formatCensusTime: top sites by time, share of the wall, µs per op, the rest, the gap', () => {
  const lines = formatCensusTime(ENTRIES, { wallMs: 10, top: 2 }).split('\n');
  assert.match(lines[0], /ms +share +count +µs\/op +kind +what +site/);
  assert.match(lines[1], /^ +6\.000 +60\.0% +2 +3000\.0 +library +cublasLtMatmul bf16 +cuda\/matmul\.cc:268$/);
  assert.match(lines[2], /^ +0\.200 +2\.0% +4 +50\.0 +kernel +layerNorm +cuda\/layernorm\.cu:150$/);
  assert.match(lines[3], /^ +0\.050 +0\.5% +the other sites$/);
  assert.match(lines[4], /^sum of op times 6\.250 ms over 7 timed ops \(3 counted, not timed\); step wall 10\.000 ms: gap 3\.750 ms \(37\.5%\)/);
  assert.match(formatCensusTime(ENTRIES, { per: 2 }), /sum of op times 3\.125 ms over 3\.50 timed ops/);
  const untimed = ENTRIES.map(({ deviceMs, timed, ...rest }) => rest);
  assert.throws(() => formatCensusTime(untimed), /the entries carry no deviceMs/);
});

test.run();
