// ZeRO stage 3's stage3_max_reuse_distance (fixtures/zero3_reuse.ts): a module run twice in one
// forward stays gathered across the module between (2 all-gathers per forward) when the distance
// allows, and is released and gathered again (3) when it is 0; either way 3 AdamW steps on 2
// ranks match one process on the whole batch (losses within 1e-5 relative), with modules whose
// outputs are an object and an array of tensors in the model.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

test('zero3: maxReuseDistance keeps a reused parameter gathered; training is the same either way', async () => {
  const r = await runLauncher(['--num_procs', '2'], 'zero3_reuse.ts', [], { timeoutMs: 60_000 });
  expectExit(r, 0, 'zero3 reuse on 2 ranks');
  const gathers = (d: string) => [...r.stdout.matchAll(new RegExp(`^\\[rank \\d\\] GATHERS ${d} (\\d+)$`, 'gm'))].map((m) => Number(m[1]));
  assert.equal(gathers('1000000000'), [4, 4], 'a gathered once across b; b, o and r once');
  assert.equal(gathers('0'), [5, 5], 'a gathered again for its second use');
  for (const d of ['1000000000', '0']) {
    const m = new RegExp(`^\\[rank 0\\] LOSSES ${d} (\\S+) (\\S+)$`, 'm').exec(r.stdout);
    assert.ok(m, r.stdout);
    const [got, want] = [JSON.parse(m![1]) as number[], JSON.parse(m![2]) as number[]];
    got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-5 * Math.abs(want[i]), `distance ${d}: step ${i} loss ${v} vs ${want[i]}`));
  }
});

test.run();
