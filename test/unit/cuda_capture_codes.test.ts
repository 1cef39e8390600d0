/**
 * Stream capture through the CUDA runtime itself (native.cudaCaptureProbe: memsets, copies and
 * events, no kernel of ours), on a GPU and on the emulated device alike: the graph's nodes (a
 * captured event record adds none) and its replays, and the error codes of calls made during a
 * capture. Where the emulated device (emu/graph.cc, emu/runtime.cc) claims the driver's code, the
 * GPU run holds it to it: a failure there means the emulator must follow the driver. Where the
 * emulator is stricter on purpose (synchronous copies and memsets, a host-side async copy, a
 * cross-stream fork), the GPU's codes are printed, not asserted. Without a CUDA device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cudaIsAvailable, native } from '../../src/index.ts';

type During = { error: string; isCapturing: string; status: number; workAfter: string; end: string; graph: boolean };
const probe = (native as unknown as { cudaCaptureProbe?: (name: string) => Record<string, unknown> }).cudaCaptureProbe;
const emulated = 'cudaEmuChecks' in native;
const device = emulated ? 'the emulated device' : 'the GPU';
const fix = 'the emulated device must return what the driver does (native/cuda/emu/graph.cc, runtime.cc)';

if (!probe || !cudaIsAvailable()) {
  test('stream capture error codes', () => {
    console.log('SKIP test/unit/cuda_capture_codes: needs a CUDA build and a device (or the emulated one)');
  });
} else {
  const during = (call: string) => probe(`during:${call}`) as unknown as During;
  const invalidated = { status: 2, workAfter: 'cudaErrorStreamCaptureInvalidated', end: 'cudaErrorStreamCaptureInvalidated', graph: false };

  test('a captured memset, event record and copy: two nodes, run at each replay only', () => {
    const r = probe('replay');
    assert.is(r.nodes, 2, `a captured cudaEventRecord adds no node on ${device}`);
    assert.equal(r.afterCapture, [0, 0, 0, 0], 'nothing ran at capture');
    assert.equal(r.first, [7, 7, 7, 7]);
    assert.equal(r.second, [7, 7, 7, 7]);
  });

  test('calls refused during a capture: the codes the emulated device claims are the driver\'s', () => {
    const claims: [string, string][] = [
      ['streamSynchronize', 'cudaErrorStreamCaptureUnsupported'],
      ['streamQuery', 'cudaErrorStreamCaptureUnsupported'],
      ['deviceSynchronize', 'cudaErrorStreamCaptureUnsupported'],
      ['eventSynchronize', 'cudaErrorCapturedEvent'],
      ['eventQuery', 'cudaErrorCapturedEvent'],
      ['waitOutside', 'cudaErrorStreamCaptureIsolation'],
    ];
    for (const [call, error] of claims) {
      const r = during(call);
      assert.equal({ error: r.error, status: r.status, workAfter: r.workAfter, end: r.end, graph: r.graph }, { error, ...invalidated }, `${call} on ${device}: ${fix}`);
    }
    // Refused without invalidating the capture (the H200's driver, stop 19; the emulator claimed invalidation before).
    const elapsed = during('elapsedTime');
    assert.equal([elapsed.error, elapsed.status, elapsed.workAfter, elapsed.end, elapsed.graph], ['cudaErrorCapturedEvent', 1, 'cudaSuccess', 'cudaSuccess', true], `elapsedTime on ${device}: ${fix}`);
    const twice = during('beginTwice');
    assert.equal([twice.error, twice.status, twice.workAfter, twice.end, twice.graph], ['cudaErrorIllegalState', 1, 'cudaSuccess', 'cudaSuccess', true], `beginTwice on ${device}: ${fix}`);
  });

  test('misuse outside a capture', () => {
    const r = probe('misuse');
    assert.equal(r, { legacy: 'cudaErrorStreamCaptureUnsupported', endNotCapturing: 'cudaErrorIllegalState', badMode: 'cudaErrorInvalidValue', statusAfter: 'cudaSuccess 0' }, `${device}: ${fix}`);
  });

  test('where the emulated device is stricter than the driver: asserted there, printed on a GPU', () => {
    const strict = ['memcpy', 'memset', 'memcpyAsyncToHost', 'fork'];
    const seen = strict.map((call) => [call, during(call)] as const);
    const short = (s: string) => s.replace(/^cudaError(StreamCapture)?/, '');
    console.log(`  capture codes on ${device}: ${seen.map(([c, r]) => `${c} ${short(r.error)}/${r.status}/${short(r.end)}`).join(', ')}`);
    if (emulated)
      for (const [call, r] of seen)
        assert.equal({ error: r.error, status: r.status, workAfter: r.workAfter, end: r.end, graph: r.graph }, { error: 'cudaErrorStreamCaptureUnsupported', ...invalidated }, call);
  });
}

test.run();
