/**
 * The devices the op suite runs on: always 'cpu', and 'cuda:0' when this process can use a CUDA
 * device (a GPU, or the emulated device of an emu build of the addon). Without one, each test
 * file that asks prints one SKIP line with the reason, and the CPU tests run exactly as before.
 *
 * MT_TEST_DEVICES=cpu (or cuda:0, or cpu,cuda:0) narrows the list, e.g. to time the CUDA half alone.
 *
 * @example
 * deviceTest('add matches a plain loop', (dev) => {
 *   const a = tensor([1, 2], { dtype: 'f64', device: dev });
 *   assert.equal(add(a, a).toList(), [2, 4]);
 * });
 */
import path from 'node:path';
import { test } from 'uvu';
import { cudaIsAvailable, native } from '../../src/index.ts';
import type { Device } from '../../src/tensor/storage.ts';

const CUDA: Device = 'cuda:0';

/** Why 'cuda:0' is not in the list, or null when it is usable. */
export function cudaSkipReason(): string | null {
  if (cudaIsAvailable()) return null;
  const info = native.deviceInfo();
  return info.cudaCompiled ? `no usable CUDA device (${info.cudaStatus})` : 'the addon was built without CUDA';
}

function wanted(): Set<string> | null {
  const v = process.env.MT_TEST_DEVICES;
  return v ? new Set(v.split(',').map((s) => s.trim())) : null;
}

const announced = new Set<string>();

/**
 * The devices to run on, in order ('cpu' first). `file` names the caller in the one SKIP line
 * printed when 'cuda:0' is left out.
 */
export function testDevices(file: string): Device[] {
  const only = wanted();
  const out: Device[] = [];
  if (!only || only.has('cpu')) out.push('cpu');
  if (only && !only.has(CUDA)) return out;
  const why = cudaSkipReason();
  if (why === null) out.push(CUDA);
  else if (!announced.has(file)) {
    announced.add(file);
    console.log(`SKIP ${file} on ${CUDA}: ${why}`);
  }
  return out;
}

/** The test's name on `dev`: unchanged on the CPU, suffixed with the device elsewhere. */
export function nameOn(name: string, dev: Device): string {
  return dev === 'cpu' ? name : `${name} [${dev}]`;
}

/** The calling test file, as test/unit/x, from a stack frame (for the SKIP line). */
function callerFile(): string {
  const frames = (new Error().stack ?? '').split('\n').slice(1);
  for (const f of frames) {
    const m = /(?:file:\/\/)?(\/[^:()]+\.test\.ts)/.exec(f);
    if (m) return path.relative(path.resolve(import.meta.dirname, '../..'), m[1]).replace(/\.test\.ts$/, '');
  }
  return 'test';
}

/**
 * Runs `body` on `dev` as one test does: on a CUDA device, an op that has no CUDA kernel yet (its
 * error says "no CUDA kernel yet") prints a SKIP line naming the op instead of failing, so files
 * can be parametrized before every kernel exists; MT_STRICT_CUDA=1 makes that a failure.
 */
export function runOnDevice(dev: Device, label: string, body: (dev: Device) => void): void {
  if (dev === 'cpu') {
    body(dev);
    return;
  }
  try {
    body(dev);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (process.env.MT_STRICT_CUDA === '1' || !/no CUDA kernel yet/.test(msg)) throw e;
    console.log(`SKIP ${label} on ${dev}: ${msg.split('\n')[0]}`);
  }
}

/** Registers `body` as one uvu test per device of testDevices() (see runOnDevice for CUDA). */
export function deviceTest(name: string, body: (dev: Device) => void): void {
  const file = callerFile();
  for (const dev of testDevices(file)) test(nameOn(name, dev), () => runOnDevice(dev, `${file} "${name}"`, body));
}
