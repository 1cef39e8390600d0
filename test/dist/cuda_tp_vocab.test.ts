// Vocab-parallel embedding and cross-entropy and the sequence-parallel gradient sums on cuda:0, two
// ranks sharing it (fixtures tp_vocab.ts and tp_sp_grads.ts with --device=cuda:0): the same f64
// equivalence to the unsharded CPU computation as on the CPU (1e-10; the emulated device measures
// 1.4e-14), the same messages for out-of-range ids (read at the next synchronization), and no host
// read in forward and backward: on one rank, where there is no collective, the addon's host-wait
// counter (cudaSyncCount) does not move, and the deferred index checks stay pending. Prints one SKIP
// line without a device.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable, native } from '../../src/index.ts';
import { expectExit, runLauncher } from './helpers.ts';

async function expectCases(fixture: string, np: number, cases: string[]): Promise<void> {
  const r = await runLauncher(['--num_procs', String(np)], fixture, ['--device=cuda:0', ...cases], { timeoutMs: 120_000 });
  expectExit(r, 0, `${fixture} on ${np} ranks sharing cuda:0`);
  for (const c of cases) {
    const ranks = [...r.stdout.matchAll(new RegExp(`^\\[rank (\\d+)\\] OK ${c} `, 'gm'))].map((m) => Number(m[1])).sort();
    assert.equal(ranks, [...Array(np).keys()], `case ${c} on every rank:\n${r.stdout}`);
  }
}

if (!cudaIsAvailable()) {
  test('vocab-parallel layers and sequence-parallel sums on cuda:0', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/dist/cuda_tp_vocab: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('tp vocabulary on 2 ranks sharing cuda:0: embedding and cross-entropy equal the unsharded CPU computation, errors, no host read', async () => {
    await expectCases('tp_vocab.ts', 2, [
      'embedding', 'lossMean', 'lossSum', 'lossNone', 'lossBf16', 'lossAllIgnored', 'lossInfStandIn', 'vocabErrors', 'rangeErrors', 'noHostRead',
    ]);
  });

  test('tp vocabulary on one rank on cuda:0: forward and backward never wait for the device', async () => {
    await expectCases('tp_vocab.ts', 1, ['noHostRead', 'lossMean', 'rangeErrors']);
  });

  test('sequence-parallel gradient sums on 2 ranks sharing cuda:0', async () => {
    await expectCases('tp_sp_grads.ts', 2, ['allHaveGrads', 'someRanks']);
  });
}

test.run();
