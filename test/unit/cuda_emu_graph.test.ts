/**
 * Stream capture and CUDA graphs on the emulated device (emulation build only, run by
 * cuda_emu.test.ts with the kernels running and again with MESHTRAIN_CUDA_EMU_SKIP_WORK=1): work
 * on a capturing stream is recorded, not run; a replay runs it with the inputs of its time and
 * the scalars of the capture, counts one cudaGraphLaunch and no launches; what the device refuses
 * during a capture fails with its error code and invalidates the capture; a replay that uses a
 * freed block or writes past an allocation fails naming the graph node, and stops there; the
 * reference cuBLASLt and cuDNN record their calls by value. Without the emulation build it prints
 * one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/index.ts';

type Result = Record<string, unknown>;
const checks = (native as unknown as { cudaEmuGraphChecks?: { run(name: string): Result } }).cudaEmuGraphChecks;
const skipWork = (process.env.MESHTRAIN_CUDA_EMU_SKIP_WORK ?? '0') !== '0' && process.env.MESHTRAIN_CUDA_EMU_SKIP_WORK !== '';
const zeros = (n: number) => Array.from({ length: n }, () => 0);
/** Device values as the host reads them: skipping work, every copy to the host reads zeros. */
const expect = (values: number[]) => (skipWork ? zeros(values.length) : values);
const allNaN = (v: unknown) => Array.isArray(v) && v.every(Number.isNaN);

if (!checks) {
  test('emulated stream capture', () => {
    console.log('SKIP test/unit/cuda_emu_graph: not the emulation build (MESHTRAIN_ADDON=build-emu/Release/meshtrain.node)');
  });
} else {
  test('a captured memset, kernel and copy run only at replay, with the inputs of each replay', () => {
    const r = checks.run('replay');
    assert.is(r.statusDuring, 1, 'cudaStreamCaptureStatusActive while capturing');
    assert.is(r.statusAfter, 0, 'cudaStreamCaptureStatusNone after cudaStreamEndCapture');
    assert.is(r.launchesCaptured, 1, 'the capture-time MT_LAUNCH is one cudaLaunchKernel call');
    assert.is(r.nodes, 3, 'memset, kernel, copy (the libraries\' capture query, a null run, adds no node)');
    assert.is(r.hookQuery, 1, 'mtEmuCaptureHook with a null run: the stream captures');
    if (skipWork) assert.equal(r.afterCapture, zeros(8));
    else assert.ok(allNaN(r.afterCapture), `nothing ran at capture (fresh memory is NaN): ${r.afterCapture}`);
    // out = 0 (memset node, over the 100s written before), out += 2 in (the scale captured, not the 5 set later), copy.
    assert.equal(r.first, expect([2, 4, 6, 8, 10, 12, 14, 16]));
    assert.equal(r.second, expect([20, 40, 60, 80, 100, 120, 140, 160]), 'the second replay reads the new input');
    assert.equal(r.replayCounts, { cudaGraphLaunch: 2, cudaLaunchKernel: 0, cudaMemsetAsync: 0, cudaMemcpyAsync: 0 });
    assert.match(r.destroyedExec as string, /^cudaErrorInvalidResourceHandle: .*cudaGraphLaunch: exec .* was destroyed/);
  });

  test('calls the device refuses during a capture fail with its code and invalidate the capture', () => {
    const cases: [string, RegExp][] = [
      ['streamSynchronize', /^cudaErrorStreamCaptureUnsupported: .*cudaStreamSynchronize: stream .* is capturing/],
      ['streamQuery', /^cudaErrorStreamCaptureUnsupported: .*cudaStreamQuery: stream .* is capturing/],
      ['deviceSynchronize', /^cudaErrorStreamCaptureUnsupported: .*cudaDeviceSynchronize: not permitted while a stream of cuda:0 captures/],
      ['memcpy', /^cudaErrorStreamCaptureUnsupported: .*cudaMemcpy \(synchronous\): not permitted/],
      ['memset', /^cudaErrorStreamCaptureUnsupported: .*cudaMemset \(synchronous\): not permitted/],
      ['memcpyAsyncToHost', /^cudaErrorStreamCaptureUnsupported: .*with a host side on capturing stream .*would read or write host memory at each replay/],
      ['eventSynchronize', /^cudaErrorCapturedEvent: .*cudaEventSynchronize: event .* was last recorded in a capturing stream/],
      ['eventQuery', /^cudaErrorCapturedEvent: .*cudaEventQuery/],
      ['fork', /^cudaErrorStreamCaptureUnsupported: .*cross-stream fork .* is not emulated/],
      ['waitOutside', /^cudaErrorStreamCaptureIsolation: .*not recorded in its capture/],
    ];
    for (const [which, message] of cases) {
      const r = checks.run(`illegal:${which}`);
      assert.match(r.error as string, message, which);
      assert.is(r.status, 2, `${which}: cudaStreamCaptureStatusInvalidated`);
      assert.match(r.launchAfter as string, /^cudaErrorStreamCaptureInvalidated: .*kernel writeAll .*its capture was invalidated by/, which);
      assert.match(r.end as string, /^cudaErrorStreamCaptureInvalidated: .*cudaStreamEndCapture: .* was invalidated by .*\(no graph\)/, which);
      assert.is(r.graphNull, true, `${which}: no graph`);
    }
    // cudaEventElapsedTime is refused but leaves the capture going, as the H200's driver does (stop 19).
    const elapsed = checks.run('illegal:elapsedTime');
    assert.match(elapsed.error as string, /^cudaErrorCapturedEvent: .*cudaEventElapsedTime: event .* was last recorded in a capturing stream/);
    assert.is(elapsed.status, 1, 'elapsedTime leaves the capture active');
    assert.match(elapsed.end as string, /^cudaSuccess/);
    assert.is(elapsed.graphNull, false, 'elapsedTime: the capture still ends in a graph');
    const twice = checks.run('illegal:beginTwice');
    assert.match(twice.error as string, /^cudaErrorIllegalState: .*already capturing/);
    assert.is(twice.status, 1, 'a second cudaStreamBeginCapture leaves the capture as it was');
    assert.match(twice.end as string, /^cudaSuccess/);
  });

  test('capture misuse: the legacy stream, ending what never began, a bad mode, destroyed graphs', () => {
    const r = checks.run('misuse');
    assert.match(r.legacy as string, /^cudaErrorStreamCaptureUnsupported: .*legacy \(NULL\) stream cannot capture/);
    assert.match(r.endNotCapturing as string, /^cudaErrorIllegalState: .*is not capturing/);
    assert.match(r.badMode as string, /^cudaErrorInvalidValue: .*mode 7/);
    assert.match(r.destroyCapturing as string, /^cudaErrorStreamCaptureUnsupported: .*is capturing \(end the capture first/);
    assert.is(r.emptyNodes, 0);
    assert.match(r.instantiateDestroyed as string, /^cudaErrorInvalidResourceHandle: .*not a live graph/);
    assert.match(r.destroyTwice as string, /^cudaErrorInvalidResourceHandle: .*cudaGraphDestroy/);
  });

  test('a replay using freed memory fails naming the graph node, and stops there', () => {
    const node = 'cudaGraphLaunch: graph \\d+ node 0 of 2 \\(kernel writeAll \\(graph_checks\\.cu:\\d+\\)\\)';
    const freed = checks.run('fault:freed');
    assert.match(freed.launch as string, /^cudaSuccess/, 'asynchronous: the fault shows at the next synchronization');
    assert.match(freed.sync as string, new RegExp(`^cudaErrorIllegalAddress: .*${node}: pointer argument 0: .* is not device memory`));
    const cached = checks.run('fault:cached');
    assert.match(cached.sync as string, new RegExp(`^cudaErrorIllegalAddress: .*${node}: pointer argument 0: .* points into a freed \\(cached\\) block`));
    for (const r of [freed, cached]) {
      if (skipWork) assert.equal(r.marker, zeros(4));
      else assert.ok(allNaN(r.marker), `the memset node after the fault did not run: ${r.marker}`);
    }
    const pastEnd = checks.run('fault:pastEnd');
    if (skipWork) assert.match(pastEnd.sync as string, /^cudaSuccess/, 'no kernel body ran, so nothing was written');
    else assert.match(pastEnd.sync as string, new RegExp(`^cudaErrorIllegalAddress: .*${node}.* wrote out of bounds: bytes 0\\.\\.3 past the end of an allocation of 256 bytes`));
  });

  test('the reference cuBLASLt and cuDNN record calls on a capturing stream by value', () => {
    const r = checks.run('libraries');
    assert.is(r.matmul, 0);
    assert.is(r.conv, 0);
    assert.is(r.nodes, 2);
    if (skipWork) assert.equal(r.matmulBeforeReplay, zeros(4));
    else assert.ok(allNaN(r.matmulBeforeReplay), `nothing computed at capture: ${r.matmulBeforeReplay}`);
    // Descriptors destroyed and alpha set to 10 after the capture: the nodes kept alpha 1 and the shapes.
    assert.equal(r.matmulFirst, expect([11, 14, 9, 12]));
    assert.equal(r.convFirst, expect([6, 8, 12, 14]));
    assert.equal(r.matmulSecond, expect([22, 28, 18, 24]), 'the replay reads A as it is then');
    assert.equal(r.convSecond, expect([14, 12, 8, 6]), 'the replay reads x as it is then');
  });
}

test.run();
