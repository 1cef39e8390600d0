// Tensor-parallel attention over the fused qkv projection (fixtures/cuda_tp_qkv.ts, 2 ranks): a
// TransformerBlock parallelized by heads runs qkvAttention on each rank's [q | k | v] slice of
// c_attn. In f64 at head dim 32, with and without sequence parallelism, output, input gradient and
// every parameter gradient equal the unsharded block's within 1e-10 (measured ~7e-15): on the CPU
// through the composed ops and through the fused kernels (MESHTRAIN_ATTENTION_CPU=fused), and on
// cuda:0 (2 ranks sharing it) through the CUDA kernels. Census on cuda:0 (bf16, head dim 64): the
// layer's forward and backward queue no strided layout copy; splitting qkv instead cost 3 in the
// backward (the emulated device: device ops per backward 44 -> 41, sequence-parallel 54 -> 51).
// Under sequence parallelism the all-gathers and reduce-scatters copy nothing at batch 1 and one
// strided copy each at batch 2; the backward's other flat copies are leaves' first gradients.
// Without a device the cuda:0 half prints one SKIP line.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable, native } from '../../src/index.ts';
import { cpuTwins } from '../helpers/cpu_twins.ts';
import { expectExit, type Run, runLauncher } from './helpers.ts';

const EQUIVALENCE = ['equivalence', 'equivalenceSequenceParallel'];

async function run(device: string, cases: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const r = await runLauncher(['--num_procs', '2'], 'cuda_tp_qkv.ts', [`--device=${device}`, ...cases], { timeoutMs: 90_000, env: { ...process.env, ...env } });
  expectExit(r, 0, `cuda_tp_qkv on ${device}`);
  for (const c of cases) {
    const ranks = [...r.stdout.matchAll(new RegExp(`^\\[rank (\\d)\\] OK ${c} `, 'gm'))].map((m) => m[1]).sort();
    assert.equal(ranks, ['0', '1'], `case ${c} on both ranks:\n${r.stdout}`);
  }
  return r;
}

if (cpuTwins) {
  test('tp = 2 block with qkvAttention equals the unsharded block on the CPU (composed ops and fused kernels), f64 within 1e-10', async () => {
    await run('cpu', EQUIVALENCE);
    await run('cpu', EQUIVALENCE, { MESHTRAIN_ATTENTION_CPU: 'fused' });
  });
}

if (!cudaIsAvailable()) {
  test('tp = 2 block with qkvAttention on cuda:0', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/dist/cuda_tp_qkv (cuda:0): no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('tp = 2 block with qkvAttention on cuda:0: equals the unsharded block (f64, 1e-10); its backward makes no layout copy', async () => {
    const r = await run('cuda:0', [...EQUIVALENCE, 'census', 'censusSequenceParallel', 'censusSequenceParallelBatch2']);
    type Count = { copies: number; flatCopies: number; deviceOps: number };
    type Census = { sequenceParallel: boolean; batch: number; leafCopies: number; sumCopies: number; forward: Count; backward: Count };
    const counts = [...r.stdout.matchAll(/^\[rank (\d)\] CENSUS (.*)$/gm)].map((m) => ({ rank: m[1], ...(JSON.parse(m[2]) as Census) }));
    assert.is(counts.length, 6, `a census per rank and case:\n${r.stdout}`);
    for (const c of counts) {
      const what = `rank ${c.rank}${c.sequenceParallel ? `, sequence parallel, batch ${c.batch}` : ''}`;
      // Sequence parallel at batch 2: one strided copy per all-gather / reduce-scatter, each way
      // (they moved the sequence dim to the front and back: 8 each way); none from attention.
      const strided = c.sequenceParallel && c.batch > 1 ? 4 : 0;
      assert.is(c.backward.copies, strided, `${what}: the backward queues ${c.backward.copies} strided copies, want ${strided}:\n${r.stdout}`);
      assert.is(c.forward.copies, strided, `${what}: the forward queues ${c.forward.copies} strided copies, want ${strided}:\n${r.stdout}`);
      // The collectives copy nothing flat: sequence parallel, the ranks' tokens are contiguous
      // blocks at batch 1 (they were copied to the front and back: 8 forward, 8 more backward);
      // without, row-parallel layers sum their partial products in place (2 copies forward) and
      // column-parallel ones their input gradients (2 backward). The backward's flat copies left
      // are the engine's, of leaves' first gradients, and layer norm's of the held gradient it sums into
      // where that is the caller's (in place of the separate add).
      assert.is(c.forward.flatCopies, 0, `${what}: the forward queues ${c.forward.flatCopies} flat copies:\n${r.stdout}`);
      assert.is(c.backward.flatCopies, c.leafCopies + c.sumCopies, `${what}: the backward queues ${c.backward.flatCopies} flat copies, ${c.leafCopies} of them a leaf's first gradient, ${c.sumCopies} a held sum's:\n${r.stdout}`);
      if (c.rank === '0') {
        const layer = `tp = 2 layer${c.sequenceParallel ? ` (sequence parallel, batch ${c.batch})` : ''}`;
        console.log(`  ${layer}: device ops forward ${c.forward.deviceOps}, backward ${c.backward.deviceOps}; copies forward ${c.forward.flatCopies} flat + ${c.forward.copies} strided, backward ${c.backward.flatCopies} flat (${c.leafCopies} of leaves' first gradients) + ${c.backward.copies} strided`);
      }
    }
  });
}

test.run();
