// Tensor parallelism composed with data parallelism, checkpoints across tp sizes, dropout's RNG
// across tp ranks, plan printing and errors: one 4-rank run of fixtures/tp_compose.ts (what each
// case checks is listed there). dp = 2 x tp = 2 matches one process to the tp_gpt tolerances
// (losses 1e-5 relative, weights 5e-5; measured ~6e-8 and ~4e-6).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

const CASES = ['dpTp', 'dpTpSequence', 'zero1Tp', 'zero2Tp', 'zero2TpSequence', 'zero3Tp', 'zero3TpSequence', 'checkpoint', 'dropout', 'plan', 'errors'];

test('tp x dp: GPT-tiny on dp = 2 x tp = 2 (DataParallel, ZeRO-1/2/3) trains as one process; its consolidated weights reload at tp = 4 with the same loss; dropout masks per tp rank; plan printed; errors name module and sizes', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshtrain-tp-'));
  try {
    const r = await runLauncher(['--num_procs', '4'], 'tp_compose.ts', [dir], { timeoutMs: 55_000 });
    expectExit(r, 0, 'tp_compose.ts on 4 ranks');
    for (const c of CASES) {
      const ranks = [...r.stdout.matchAll(new RegExp(`^\\[rank (\\d+)\\] OK ${c}\\b`, 'gm'))].map((m) => Number(m[1])).sort();
      assert.equal(ranks, [0, 1, 2, 3], `case ${c} on every rank:\n${r.stdout}`);
    }
    const plan = r.stdout.split('\n').filter((l) => l.startsWith('[rank 0] ')).map((l) => l.slice(9));
    const at = plan.indexOf('PLAN');
    assert.equal(plan.slice(at + 1, plan.indexOf('END', at)).map((l) => l.replace(/\s+/g, ' ').trim()), [
      'tensor-parallel plan (sequence parallel):',
      'wte vocab 1 module',
      'h.0 replicate (input scatterToSequence) 1 module',
      'h.*.ln_1 sequence 2 modules',
      'h.*.attn heads 2 modules',
      'h.*.attn.c_attn colwise (stacked 3) 2 modules',
      'h.*.attn.c_proj rowwise 2 modules',
      'h.*.ln_2 sequence 2 modules',
      'h.*.mlp sequence 2 modules',
      'h.*.mlp.c_fc colwise 2 modules',
      'h.*.mlp.c_proj rowwise 2 modules',
      'ln_f sequence (output allGatherFromSequence) 1 module',
    ]);
    assert.ok(r.stdout.includes('(c_attn): ColumnParallelLinear(32, 96 (24 on this rank), stacked: 3)'), 'the tp = 4 model printed');
    assert.ok(fs.existsSync(path.join(dir, 'model.safetensors')), 'safetensors written');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
