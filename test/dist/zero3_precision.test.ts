// ZeRO stage 3 with 16-bit parameters (fixtures/zero3_precision.ts): GPT tiny in bf16 and the
// small ResNet in f16 on 2 ranks, against ZeRO stage 2 on the same ranks (both keep fp32 masters
// and AdamW state in the partitions and average 16-bit gradients). Per-step losses and final
// weights within 1e-3 relative (measured: identical).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

async function compare(kind: string, dtype: string): Promise<void> {
  const r = await runLauncher(['--num_procs', '2'], 'zero3_precision.ts', [kind, dtype, '3'], { timeoutMs: 60_000 });
  expectExit(r, 0, `zero3 ${kind} ${dtype}`);
  const get = (what: string) => [...r.stdout.matchAll(new RegExp(`^\\[rank \\d\\] ${what} (.*)$`, 'gm'))].map((m) => m[1]);
  const [s2] = get('LOSSES s2').map((l) => JSON.parse(l) as number[]);
  const s3s = get('LOSSES s3').map((l) => JSON.parse(l) as number[]);
  assert.is(s3s.length, 2, r.stdout);
  for (const s3 of s3s) s3.forEach((v, i) => assert.ok(Math.abs(v - s2[i]) <= 1e-3 * Math.abs(s2[i]), `${kind} ${dtype}: step ${i} loss ${v} vs stage 2 ${s2[i]}`));
  for (const w of get('WDIFF')) {
    const [diff, dt] = w.split(' ');
    assert.is(dt, dtype, 'the parameters stayed 16-bit');
    assert.ok(Number(diff) <= 1e-3, `${kind} ${dtype}: final weights within 1e-3 of stage 2 (got ${diff})`);
  }
}

test('zero3: bf16 GPT tiny on 2 ranks trains like ZeRO stage 2', async () => {
  await compare('gpt', 'bf16');
});

test('zero3: f16 small ResNet on 2 ranks trains like ZeRO stage 2', async () => {
  await compare('conv', 'f16');
});

test.run();
