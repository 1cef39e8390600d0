/**
 * The reference cuDNN's graph API refuses what cuDNN refuses (native/cuda/emu/cudnn_graph_checks.cu
 * builds one small graph per misuse): an attribute of the wrong type, a tensor without its byte
 * alignment, a change after finalize, an unfinalized descriptor as an element, matmul shapes that do
 * not chain, GEN_INDEX into a float tensor, a virtual tensor never read, two tensors with one uid, a
 * variant pack without or with an extra uid, a pointer off its declared alignment; each with
 * CUDNN_STATUS_BAD_PARAM (2000) at the call that sees it and a message naming the problem. A
 * well-formed C = A·B runs and gives the product. Without that, cuda_attention_cudnn's passing on the
 * emulator would say little. Emulation builds only; elsewhere one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/index.ts';

interface Case {
  status: number;
  call: string;
  message: string;
}

const checks = native.cudaEmuCudnnChecks as { run(): Record<string, Case> & { validC: number[] } } | undefined;

if (!checks) {
  test('reference cuDNN graph API checks', () => {
    console.log('SKIP test/unit/cuda_emu_cudnn: not an emulated-device build');
  });
} else {
  const r = checks.run();

  test('a well-formed matmul graph runs and gives A·B', () => {
    assert.equal(r.valid, { status: 0, call: '', message: '' });
    const a = Array.from({ length: 32 }, (_, i) => (i % 5) - 2);
    const b = Array.from({ length: 32 }, (_, i) => (i % 3) - 1);
    const want: number[] = [];
    for (let i = 0; i < 4; i++)
      for (let j = 0; j < 4; j++) {
        let s = 0;
        for (let k = 0; k < 8; k++) s += a[i * 8 + k] * b[k * 4 + j];
        want.push(s);
      }
    assert.equal(r.validC, want);
  });

  const refused: [string, string, RegExp][] = [
    ['dataTypeAsInt64', 'set', /attribute type 3, expected 1/],
    ['noAlignment', 'finalize', /attribute 900 is required/],
    ['setAfterFinalize', 'set', /already finalized/],
    ['unfinalizedElement', 'set', /null or not finalized/],
    ['matmulShapes', 'finalize', /matmul shapes do not chain/],
    ['genIndexIntoFloat', 'finalize', /GEN_INDEX makes an INT32 tensor/],
    ['virtualNeverRead', 'finalize', /written but never read/],
    ['sharedUid', 'finalize', /two tensors share uid 1/],
    ['missingUid', 'execute', /no pointer for uid 3/],
    ['extraUid', 'execute', /uid 4 is not a tensor of the graph/],
    ['misaligned', 'execute', /not aligned to its byte alignment/],
  ];
  for (const [name, call, message] of refused) {
    test(`refused: ${name}`, () => {
      const c = r[name];
      assert.is(c.status, 2000, `${name}: ${JSON.stringify(c)}`);
      assert.is(c.call, call, `${name}: refused at ${c.call}`);
      assert.match(c.message, message);
    });
  }
}

test.run();
