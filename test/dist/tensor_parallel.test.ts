// Tensor parallelism against the unsharded computation, in real processes through the launcher (one
// job per tp size runs the cases of all five fixtures).
// Every value and gradient is compared in f64 with max |difference| <= 1e-10 (tp_common.ts TOL):
// the sharded computation differs from the reference only in summation order.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { expectExit, type Run, runLauncher } from './helpers.ts';

/** One job per tp size runs every fixture's cases (fixtures/tp_all.ts): the ranks start once, not once per fixture. */
const jobs = new Map<number, Promise<Run>>();

/** Checks that every rank of the tp = `np` job reported every case of `cases`. */
async function expectCases(np: number, cases: string[]): Promise<void> {
  if (!jobs.has(np)) jobs.set(np, runLauncher(['--num_procs', String(np)], 'tp_all.ts', [], { timeoutMs: 90_000 }));
  const r = await (jobs.get(np) as Promise<Run>);
  expectExit(r, 0, `tp_all.ts on ${np} ranks`);
  for (const c of cases) {
    const ranks = [...r.stdout.matchAll(new RegExp(`^\\[rank (\\d+)\\] OK ${c} `, 'gm'))].map((m) => Number(m[1])).sort();
    assert.equal(ranks, [...Array(np).keys()], `case ${c} on every rank:\n${r.stdout}`);
  }
}

const MAPPINGS = [
  'copyToRegion', 'copyToRegionHeldGrad', 'reduceFromRegion', 'reduceFromRegionInPlace', 'scatterToRegion', 'gatherFromRegion',
  'scatterToSequence', 'gatherFromSequence', 'allGatherFromSequence', 'reduceScatterToSequence', 'sequenceBatch1', 'indivisible',
];

test('tp mappings: each conjugate pair equals the unsharded computation, values and gradients (tp = 2)', async () => {
  await expectCases(2, MAPPINGS);
});

test('tp mappings: the same at tp = 4', async () => {
  await expectCases(4, MAPPINGS);
});

const LINEAR = ['init', 'column', 'columnGathered', 'rowParallelInput', 'rowFullInput', 'sequenceParallel', 'sequenceParallelLayerNorm', 'linearSizeErrors'];

test('tp linears: same seed gives slices of nn.Linear; outputs and every gradient equal it (replicated grads summed over tp under sequence parallelism); size errors name the numbers (tp = 2)', async () => {
  await expectCases(2, LINEAR);
});

test('tp linears: the same at tp = 4', async () => {
  await expectCases(4, LINEAR);
});

const LAYERS = ['attention', 'mlp', 'attentionSequenceParallel', 'mlpSequenceParallel', 'layerErrors'];

test('tp attention and MLP: same seed gives slices of nn\'s layers; outputs and every gradient equal them, with and without sequence parallelism (tp = 2)', async () => {
  await expectCases(2, LAYERS);
});

test('tp attention and MLP: the same at tp = 4 (one head per rank)', async () => {
  await expectCases(4, LAYERS);
});

const VOCAB = ['embedding', 'lossMean', 'lossSum', 'lossNone', 'lossBf16', 'lossAllIgnored', 'lossInfStandIn', 'vocabErrors', 'rangeErrors', 'noHostRead'];

test('tp vocabulary: VocabParallelEmbedding equals nn.Embedding; vocabParallelCrossEntropy equals crossEntropy on the full logits, loss and gradients (all targets ignored, -Infinity stand-in logits too); out-of-range ids and targets name value, position and vocabulary; no host read in forward and backward (tp = 2)', async () => {
  await expectCases(2, VOCAB);
});

test('tp vocabulary: the same at tp = 4', async () => {
  await expectCases(4, VOCAB);
});

test('sequence-parallel gradient sums: in place with no host read when every rank has gradients; a gradient on rank 0 only reaches every rank; none anywhere stays none (tp = 2, 4)', async () => {
  await expectCases(2, ['allHaveGrads', 'someRanks']);
  await expectCases(4, ['allHaveGrads', 'someRanks']);
});

test.run();
