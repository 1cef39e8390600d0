// Loading weights into a ZeRO-3 model (fixtures/zero3_modify.ts): inside
// zero.gathered(fn, undefined, { modifierRank: 0 }) only rank 0 loads a reference state dict; every
// rank then holds exactly the reference weights (same hash), f32 training continues like the
// reference in one process (losses within 1e-5 relative), and bf16 fp32 masters were updated too
// (a step with lr 0 writes the masters back into the weights and they stay the loaded ones).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

test('zero3: gathered() with modifierRank writes one rank\'s values into every rank\'s shards and masters', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'zero3_modify.ts', [], { timeoutMs: 60_000 });
  expectExit(r, 0, 'zero3 modify on 2 ranks');
  const get = (what: string) => [...r.stdout.matchAll(new RegExp(`^\\[rank \\d\\] ${what} (\\S+)$`, 'gm'))].map((m) => m[1]);
  for (const dt of ['f32', 'bf16']) {
    const [ref] = get(`REF ${dt}`);
    assert.equal(get(`HASH ${dt}`), [ref, ref], `${dt}: every rank holds the loaded weights`);
  }
  const [bref] = get('REF bf16');
  assert.equal(get('AFTER bf16'), [bref, bref], 'bf16: the masters were loaded too');
  const m = /^\[rank 0\] LOSSES (\S+) (\S+)$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  const [got, want] = [JSON.parse(m![1]) as number[], JSON.parse(m![2]) as number[]];
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-5 * Math.abs(want[i]), `step ${i}: loss ${v} vs ${want[i]}`));
});

test.run();
