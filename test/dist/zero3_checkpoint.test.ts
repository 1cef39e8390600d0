// ZeRO stage 3 checkpoints (fixtures/zero3_checkpoint.ts): GPT tiny trained 2 steps at stage 3 on
// 4 ranks saves its partitionShards() through src/engine/checkpoint/; 2 ranks load the slices of
// their own partitions at stage 3 and at stage 2 (the loader reshards). The loaded weights are
// identical bit for bit (same hash as the saver's gathered weights), and the next 2 steps' losses
// with the loaded AdamW state equal the saver's own continuation within 1e-5 relative.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

function lines(out: string, what: string): string[] {
  return [...out.matchAll(new RegExp(`^\\[rank \\d\\] ${what} (.*)$`, 'gm'))].map((m) => m[1]);
}

test('zero3 checkpoint: saved at stage 3 dp=4, loaded at stage 3 dp=2 and stage 2 dp=2 with identical weights', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zero3-ck-'));
  try {
    const save = await runLauncher(['--num_procs', '4'], 'zero3_checkpoint.ts', ['save', dir], { timeoutMs: 60_000 });
    expectExit(save, 0, 'zero3 checkpoint save on 4 ranks');
    const load = await runLauncher(['--num_procs', '2'], 'zero3_checkpoint.ts', ['load', dir], { timeoutMs: 60_000 });
    expectExit(load, 0, 'zero3 checkpoint load on 2 ranks');
    const saved = new Set(lines(save.stdout, 'HASH save'));
    assert.is(saved.size, 1, 'the saving ranks agree on the weights');
    const [hash] = [...saved];
    const [want] = new Set(lines(save.stdout, 'LOSSES save')).values();
    const expected = JSON.parse(want) as number[];
    for (const stage of [3, 2]) {
      const got = lines(load.stdout, `HASH s${stage}`);
      assert.is(got.length, 2, load.stdout);
      for (const g of got) assert.is(g, `${hash} saved-by 4`, `stage ${stage} at dp=2 loads the dp=4 stage-3 weights bit for bit`);
      for (const l of lines(load.stdout, `LOSSES s${stage}`)) {
        const losses = JSON.parse(l) as number[];
        losses.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) <= 1e-5 * Math.abs(expected[i]), `stage ${stage}: loss ${i} ${v} vs ${expected[i]} (optimizer state resharded)`));
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
