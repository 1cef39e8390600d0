/**
 * bench/ncu_summary.ts, the reader of scripts/gpu_check.sh's ncu CSV: quoted kernel names with
 * commas, thousands separators, units, other metrics and ncu's own "==PROF==" lines. The sample
 * has the shape of `ncu --csv --metrics gpu__time_duration.sum` output (one row per kernel and metric).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { csvFields, formatNcuTimes, ncuKernelTimes } from '../../bench/ncu_summary.ts';

const HEAD = '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"';
const row = (id: number, kernel: string, metric: string, unit: string, value: string) =>
  `"${id}","42","node","127.0.0.1","${kernel}","1","13","(256, 1, 1)","(96, 1, 1)","0","9.0","Command line profiler metrics","${metric}","${unit}","${value}"`;
const SAMPLE = [
  '==PROF== Connected to process 42 (/usr/bin/node)',
  '==PROF== Profiling "layerNormForward": 0%....50%....100% - 1 pass',
  HEAD,
  row(0, 'void mt::cu::layerNormForward<__nv_bfloat16, float>(const T1 *, int, long)', 'gpu__time_duration.sum', 'nsecond', '12,480'),
  row(1, 'sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64', 'gpu__time_duration.sum', 'usecond', '250.50'),
  row(2, 'void mt::cu::layerNormForward<__nv_bfloat16, float>(const T1 *, int, long)', 'gpu__time_duration.sum', 'nsecond', '7,520'),
  row(2, 'void mt::cu::layerNormForward<__nv_bfloat16, float>(const T1 *, int, long)', 'sm__throughput.avg.pct_of_peak_sustained_elapsed', '%', '41.2'),
  '==PROF== Disconnected from process 42',
].join('\n');

test('csvFields: quotes, doubled quotes, commas inside quotes, empty fields', () => {
  assert.equal(csvFields('"a,b","c""d",,e'), ['a,b', 'c"d', '', 'e']);
});

test('ncuKernelTimes sums gpu__time_duration.sum per kernel in ms, most time first', () => {
  const rows = ncuKernelTimes(SAMPLE);
  assert.equal(rows, [
    { kernel: 'sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64', ms: 0.2505, count: 1 },
    { kernel: 'void mt::cu::layerNormForward<__nv_bfloat16, float>', ms: 0.02, count: 2 },
  ]);
  const anon = ncuKernelTimes([HEAD, row(0, 'void mt::(anonymous namespace)::fill<float>(float *, long)', 'gpu__time_duration.sum', 'msecond', '1.5')].join('\n'));
  assert.equal(anon, [{ kernel: 'void mt::{anonymous}::fill<float>', ms: 1.5, count: 1 }]);
  const table = formatNcuTimes(rows, 1);
  assert.match(table, /0\.251\s+92\.6%\s+1\s+sm90_xmma_gemm/);
  assert.match(table, /0\.020\s+7\.4%\s+the other 1 kernels/);
  assert.match(table, /ncu: 3 kernel launches, 2 distinct kernels, 0\.271 ms of kernel time in all/);
});

test('errors name what is missing', () => {
  assert.throws(() => ncuKernelTimes('==PROF== No kernels were profiled.'), /no CSV header/);
  assert.throws(() => ncuKernelTimes('"ID","Kernel Name"\n"0","k"'), /no "Metric Name" column/);
  assert.throws(() => ncuKernelTimes([HEAD, row(0, 'k', 'gpu__time_duration.sum', 'cycle', '5')].join('\n')), /unknown unit "cycle"/);
});

test.run();
