// Shared by engine_memory.test.ts (2 ranks) and engine_memory4.test.ts (4 ranks): runs
// fixtures/engine_memory.ts and checks each rank's MemoryReport against the formula (see there),
// and that memory_breakdown logged the report at each step on rank 0.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { MemoryReport } from '../../src/index.ts';
import { expectExit, runLauncher } from './helpers.ts';

export const PSI = 28032;

export async function reports(np: number, args: string[]): Promise<{ reports: MemoryReport[]; stdout: string }> {
  const r = await runLauncher(['--num_procs', String(np)], 'engine_memory.ts', args, { timeoutMs: 60_000 });
  expectExit(r, 0, `memory report ${args.join(' ')} on ${np} ranks`);
  const reps = [...r.stdout.matchAll(/^\[rank \d+\] REPORT (.*)$/gm)].map((m) => JSON.parse(m[1]) as MemoryReport);
  assert.is(reps.length, np, 'every rank reported');
  // memory_breakdown: true logs the report with every optimizer step (2), on rank 0 only.
  const breakdown = [...r.stdout.matchAll(/^\[rank (\d+)\] BREAKDOWN (\d+)$/gm)].map((m) => [Number(m[1]), Number(m[2])]);
  assert.equal(breakdown.sort((a, b) => a[0] - b[0]), Array.from({ length: np }, (_, i) => [i, i === 0 ? 2 : 0]), 'memory_breakdown');
  return { reports: reps, stdout: r.stdout };
}

export function within5(r: MemoryReport, what: string): void {
  for (const tag of ['param', 'grad', 'optim'] as const) {
    const got = r.measured[tag].current;
    const want = r.expected[tag];
    assert.ok(Math.abs(got - want) <= 0.05 * want, `${what}, rank ${r.rank}: ${tag} ${got} bytes within 5% of formula + buffers ${want}`);
    assert.ok(r.measured[tag].peak >= got, `${what}: ${tag} peak >= current`);
  }
}

/** Registers the stage 1/2/3 test on `np` ranks. */
export function stagesTest(np: number): void {
  test(`memory report: stages 1, 2 and 3 on ${np} ranks (f32 AdamW) match 8Ψ + 8Ψ/N, 4Ψ + 12Ψ/N and 16Ψ/N plus buffers within 5%`, async () => {
    for (const stage of [1, 2, 3]) {
      const { reports: reps, stdout } = await reports(np, [String(stage)]);
      for (const r of reps) {
        const what = `stage ${stage}, N = ${np}`;
        assert.is(r.psi, PSI);
        assert.is(r.dpSize, np);
        assert.is(r.formula.text, ['', '8Ψ + 8Ψ/N', '4Ψ + 12Ψ/N', '16Ψ/N'][stage], what);
        within5(r, what);
        assert.ok(r.measured.optim.current <= 1.05 * ((8 * PSI) / np), `${what}: optimizer state about 1/N of 8Ψ`);
        if (stage === 3) {
          assert.ok(r.buffers.some((b) => b.name === 'stage-3 gradient buckets' && b.bytes > 0), `${what}: the buckets are listed`);
          assert.ok(r.buffers.some((b) => b.name === 'stage-3 persistent parameters' && b.bytes > 0), `${what}: the persistent parameters are listed`);
          assert.ok(r.measured.param.current < 0.6 * 4 * PSI, `${what}: parameters partitioned (${r.measured.param.current} vs ${4 * PSI} in full)`);
        } else if (stage === 2) {
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

