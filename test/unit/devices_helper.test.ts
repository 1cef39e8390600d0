/**
 * test/helpers/devices.ts, which decides where the op suite runs: 'cpu' always, 'cuda:0' only when
 * usable (else one SKIP line with the reason), MT_TEST_DEVICES narrowing, and on CUDA a missing
 * kernel skipping (not passing silently: a SKIP line names it) unless MT_STRICT_CUDA=1.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable } from '../../src/index.ts';
import { cudaSkipReason, nameOn, runOnDevice, testDevices } from '../helpers/devices.ts';

function setEnv(vars: Record<string, string | undefined>): void {
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
}

/** Runs fn with console.log captured and env vars set; returns the printed lines. */
function captured(env: Record<string, string | undefined>, fn: () => void): string[] {
  const lines: string[] = [];
  const log = console.log;
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  console.log = (...a: unknown[]) => lines.push(a.join(' '));
  setEnv(env);
  try {
    fn();
  } finally {
    console.log = log;
    setEnv(saved);
  }
  return lines;
}

test('testDevices: cpu first; cuda:0 when usable, else one SKIP line per file with the reason', () => {
  let devs: string[] = [];
  const lines = captured({ MT_TEST_DEVICES: undefined }, () => {
    devs = testDevices('test/unit/x');
    testDevices('test/unit/x'); // the same file asks again: no second line
  });
  if (cudaIsAvailable()) {
    assert.equal(devs, ['cpu', 'cuda:0']);
    assert.equal(lines, []);
    assert.is(cudaSkipReason(), null);
  } else {
    assert.equal(devs, ['cpu']);
    assert.equal(lines, [`SKIP test/unit/x on cuda:0: ${cudaSkipReason()}`]);
    assert.match(String(cudaSkipReason()), /no usable CUDA device|built without CUDA/);
  }
});

test('MT_TEST_DEVICES narrows the list', () => {
  captured({ MT_TEST_DEVICES: 'cpu' }, () => assert.equal(testDevices('test/unit/y'), ['cpu']));
  captured({ MT_TEST_DEVICES: 'cuda:0' }, () => assert.equal(testDevices('test/unit/z'), cudaIsAvailable() ? ['cuda:0'] : []));
});

test('names: unchanged on the CPU, suffixed elsewhere', () => {
  assert.is(nameOn('add', 'cpu'), 'add');
  assert.is(nameOn('add', 'cuda:0'), 'add [cuda:0]');
});

test('runOnDevice: a missing CUDA kernel prints a SKIP line naming it; other errors and strict mode fail', () => {
  const missing = () => {
    throw new Error("conv2d: no CUDA kernel yet (input f32 [1, 2] is on cuda:0); move it to the CPU with .to('cpu')");
  };
  const lines = captured({ MT_STRICT_CUDA: undefined }, () => runOnDevice('cuda:0', 'test/unit/conv "fwd"', missing));
  assert.equal(lines, ['SKIP test/unit/conv "fwd" on cuda:0: conv2d: no CUDA kernel yet (input f32 [1, 2] is on cuda:0); move it to the CPU with .to(\'cpu\')']);
  captured({ MT_STRICT_CUDA: '1' }, () => assert.throws(() => runOnDevice('cuda:0', 'x', missing), /no CUDA kernel yet/));
  const wrong = () => {
    throw new Error('add: output differs by 0.5');
  };
  assert.throws(() => runOnDevice('cuda:0', 'x', wrong), /output differs/);
  assert.throws(() => runOnDevice('cpu', 'x', missing), /no CUDA kernel yet/, 'on the CPU nothing is skipped');
  let ran = '';
  runOnDevice('cpu', 'x', (d) => {
    ran = d;
  });
  assert.is(ran, 'cpu');
});

test.run();
