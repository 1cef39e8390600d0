// engine.memoryReport() on real ranks (fixtures/engine_memory.ts, one case per run): after 2 steps of
// GPT tiny (Ψ = 28,032) through initialize(), every rank's measured param / grad / optim bytes
// (memoryStats, current) are within 5% of ZeRO's formula term plus the named buffers (stage 1's
// reduced gradient partition, stage 2's gradient buckets): stages 1 and 2 on 2 and 4 ranks (f32
// AdamW), stage 0 on 2, stage 2 in bf16 (2Ψ + 14Ψ/N: fp32 masters count as optimizer state) and
// stage 1 with SGD-momentum (K = 4). Stage 2's gradients are also checked to be well under one full
// gradient, so keeping full gradients would fail; stage 1's optimizer state under 1/N + 5%.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MemoryReport } from '../../src/index.ts';
import { expectExit, runLauncher } from './helpers.ts';

const PSI = 28032;

async function reports(np: number, args: string[]): Promise<{ reports: MemoryReport[]; stdout: string }> {
  const r = await runLauncher(['--num_procs', String(np)], 'engine_memory.ts', args, { timeoutMs: 60_000 });
  expectExit(r, 0, `memory report ${args.join(' ')} on ${np} ranks`);
  const reps = [...r.stdout.matchAll(/^\[rank \d+\] REPORT (.*)$/gm)].map((m) => JSON.parse(m[1]) as MemoryReport);
  assert.is(reps.length, np, 'every rank reported');
  return { reports: reps, stdout: r.stdout };
}

function within5(r: MemoryReport, what: string): void {
  for (const tag of ['param', 'grad', 'optim'] as const) {
    const got = r.measured[tag].current;
    const want = r.expected[tag];
    assert.ok(Math.abs(got - want) <= 0.05 * want, `${what}, rank ${r.rank}: ${tag} ${got} bytes within 5% of formula + buffers ${want}`);
    assert.ok(r.measured[tag].peak >= got, `${what}: ${tag} peak >= current`);
  }
}

for (const np of [2, 4]) {
  test(`memory report: stages 1 and 2 on ${np} ranks (f32 AdamW) match 8Ψ + 8Ψ/N and 4Ψ + 12Ψ/N plus buffers within 5%`, async () => {
    for (const stage of [1, 2]) {
      const { reports: reps, stdout } = await reports(np, [String(stage)]);
      for (const r of reps) {
        const what = `stage ${stage}, N = ${np}`;
        assert.is(r.psi, PSI);
        assert.is(r.dpSize, np);
        assert.is(r.formula.text, stage === 1 ? '8Ψ + 8Ψ/N' : '4Ψ + 12Ψ/N', what);
        within5(r, what);
        assert.ok(r.measured.optim.current <= 1.05 * ((8 * PSI) / np), `${what}: optimizer state about 1/N of 8Ψ`);
        if (stage === 2) {
          assert.ok(r.buffers.some((b) => b.name === 'stage-2 gradient buckets' && b.bytes > 0), `${what}: the buckets are listed`);
          assert.ok(r.measured.grad.current < 0.8 * 4 * PSI, `${what}: gradients well under one full gradient (${r.measured.grad.current} vs ${4 * PSI})`);
        } else {
          assert.ok(r.buffers.some((b) => b.name === 'stage-1 reduced gradient partition'), `${what}: the partition buffer is listed`);
        }
      }
      assert.match(stdout, new RegExp(`\\[rank 0\\] memory, rank 0 \\(ZeRO stage ${stage}, f32 weights, AdamW; Ψ = ${PSI} parameters, N = ${np} dp ranks\\)`));
    }
  });
}

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
