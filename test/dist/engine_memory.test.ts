// engine.memoryReport() on real ranks (fixtures/engine_memory.ts, one case per run): after 2 steps of
// GPT tiny (Ψ = 28,032) through initialize(), every rank's measured param / grad / optim bytes
// (memoryStats, current) are within 5% of ZeRO's formula term plus the named buffers (stage 1's
// reduced gradient partition, stage 2's and 3's gradient buckets, stage 3's persistent parameters:
// stage3_param_persistence_threshold 100): stages 1, 2 and 3 on 2 ranks (f32 AdamW; 4 ranks in
// engine_memory4.test.ts), stage 0, stage 2 in bf16 (2Ψ + 14Ψ/N: fp32 masters count as optimizer
// state) and stage 1 with SGD-momentum (K = 4); engine_memory4.test.ts: 4 ranks and offload. Stage 2's gradients are also checked to be well under one full
// gradient and stage 3's parameters well under the full model, so keeping either whole would
// fail; the optimizer state is under 1/N + 5%.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PSI, reports, stagesTest, within5 } from './memory_checks.ts';

stagesTest(2);

test('memory report: stage 0 (16Ψ as 4 + 4 + 8), bf16 stage 2 (2Ψ + 14Ψ/N) and SGD-momentum stage 1 on 2 ranks', async () => {
  const cases = [
    { args: ['0'], text: '16Ψ', optim: 8 * PSI },
    { args: ['2', 'bf16'], text: '2Ψ + 14Ψ/N', optim: (12 * PSI) / 2 },
    { args: ['1', 'f32', 'SGD'], text: '8Ψ + 4Ψ/N', optim: (4 * PSI) / 2 },
  ];
  for (const c of cases) {
    const { reports: reps } = await reports(2, c.args);
    for (const r of reps) {
      const what = c.args.join(' ');
      assert.is(r.formula.text, c.text, what);
      within5(r, what);
      assert.ok(Math.abs(r.measured.optim.current - c.optim) <= 0.05 * c.optim, `${what}: optim ${r.measured.optim.current} vs ${c.optim}`);
    }
  }
});

test.run();
