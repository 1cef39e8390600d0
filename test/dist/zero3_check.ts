// Shared by zero3.test.ts and zero3_resnet.test.ts: runs fixtures/zero3.ts and checks it. ZeRO stage 3
// on 2 and 4 real ranks vs single-process training, for GPT tiny
// (tied head gathered as an external parameter) and a small ResNet-style convnet: AdamW with
// prefetch; AdamW with clipping and prefetch off; 2 accumulated micro-batches with synchronous
// reduction; SGD-momentum with clipping, a small prefetch bucket and a live-parameter bound; GPT
// with activation checkpointing; the convnet with an eval forward along another path (re-trace);
// GPT with the optimizer offloaded to the CPU pool and to NVMe files (bit-identical to AdamW without).
// Tolerances, f32: per-step losses and gradient norms within 1e-5 relative; final weights within
// 1e-5 x max(1, |w|) (measured <= 1.1e-6); GPT's attention key bias within 1e-4 (its true gradient
// is exactly zero and Adam normalizes rounding noise; measured ~1e-5), as in zero.test.ts.
// Memory: 'param' bytes between steps, measured with memoryStats(), within 5% of this rank's
// partition plus its persistent parameters (measured: equal), 'grad' of the gradient partition plus
// the pooled buckets, 'optim' of one f32 per state and partition element (0 when offloaded); the peak during training above that
// equals what the coordinator has gathered (without prefetch, a quarter of the model for GPT).
import * as assert from 'uvu/assert';
import { expectExit, runLauncher } from './helpers.ts';

interface Cmp {
  lossRel: number; normRel: number; weightAbs: number; keyBiasAbs: number; worst: string; refNorms: number[];
  paramBytes: number[]; expectedBytes: number; gradOptim: number[]; expectGradOptim: number[]; prefetched: number[]; prefetchedBackward: number[]; peakLive: number; peakParamExtra: number; fullBytes: number;
  partitions: { numel: number; partitionNumel: number; persistentNumel: number }[];
}
interface Result { kind: string; world: number; results: Record<string, Cmp> }

export async function run(kind: 'gpt' | 'conv', np: number, steps: number): Promise<{ res: Result; out: string }> {
  const r = await runLauncher(['--num_procs', String(np)], 'zero3.ts', [kind, String(steps)], { timeoutMs: 60_000 });
  expectExit(r, 0, `zero3 ${kind} on ${np} ranks`);
  const m = /^\[rank 0\] RESULT (.*)$/m.exec(r.stdout);
  assert.ok(m, r.stdout);
  return { res: JSON.parse(m![1]) as Result, out: r.stdout };
}

export function check({ res, out }: { res: Result; out: string }): void {
  const n = res.world;
  for (const [name, c] of Object.entries(res.results)) {
    const what = `${res.kind} on ${n} ranks, ${name}`;
    assert.ok(c.lossRel <= 1e-5, `${what}: losses within 1e-5 relative (got ${c.lossRel})`);
    assert.ok(c.normRel <= 1e-5, `${what}: gradient norms within 1e-5 relative (got ${c.normRel})`);
    assert.ok(c.weightAbs <= 1e-5, `${what}: weights within 1e-5 (got ${c.weightAbs} at ${c.worst})`);
    assert.ok(c.keyBiasAbs <= 1e-4, `${what}: attention key bias within 1e-4 (got ${c.keyBiasAbs})`);
    if (c.refNorms.length) assert.ok(Math.max(...c.refNorms) > 0.5, `${what}: clipping was active (${c.refNorms})`);
    const hashes = [...out.matchAll(new RegExp(`^\\[rank \\d\\] HASH ${name} (\\S+)$`, 'gm'))].map((x) => x[1]);
    assert.is(hashes.length, n, `${what}: every rank printed its weights' hash`);
    assert.is(new Set(hashes).size, 1, `${what}: identical gathered weights on every rank`);
    if (name.startsWith('offload')) {
      const plain = /^\[rank 0\] HASH adamw (\S+)$/m.exec(out)?.[1];
      assert.is(hashes[0], plain, `${what}: the same weights bit for bit as without offload`);
    }
    const released = [...out.matchAll(new RegExp(`^\\[rank \\d\\] RELEASED ${name} (\\S+) (.*)$`, 'gm'))];
    assert.is(released.length, n, `${what}: every rank read a released parameter`);
    for (const [, param, msg] of released) {
      assert.match(JSON.parse(msg), `parameter "${param}"`, `${what}: the error names the parameter`);
      assert.match(JSON.parse(msg), 'is partitioned over the data-parallel ranks and not gathered here', `${what}: the error says why`);
    }
    // Parameter memory between steps: this rank's partition plus the persistent parameters.
    for (const b of c.paramBytes) assert.ok(Math.abs(b - c.expectedBytes) <= 0.05 * c.expectedBytes, `${what}: param bytes ${b} within 5% of ${c.expectedBytes}`);
    const [grad, optim] = c.gradOptim;
    const [wantGrad, wantOptim] = c.expectGradOptim;
    assert.ok(Math.abs(grad - wantGrad) <= 0.05 * wantGrad, `${what}: grad bytes ${grad} within 5% of partition + buckets ${wantGrad}`);
    assert.ok(Math.abs(optim - wantOptim) <= 0.05 * wantOptim, `${what}: optim bytes ${optim} within 5% of states x partition x 4 = ${wantOptim}`);
    const [p] = c.partitions;
    assert.ok(p.partitionNumel * n - p.numel <= 0.05 * p.numel, `${what}: the partition is 1/${n} of the parameters plus under 5% padding (${p.partitionNumel} x ${n} vs ${p.numel})`);
    assert.ok(p.persistentNumel < 0.2 * p.numel, `${what}: few persistent elements (${p.persistentNumel} of ${p.numel})`);
    const nonPersistent = p.numel - p.persistentNumel;
    // During forward and backward, parameter memory above the partitions is exactly what is gathered:
    // autograd saves partitioned parameters by reference, so nothing pins a released parameter's copy.
    assert.ok(c.peakParamExtra <= c.peakLive * 4, `${what}: peak gathered bytes ${c.peakParamExtra} within the coordinator's live count ${c.peakLive} x 4`);
    if (name === 'adamw') {
      assert.ok(c.prefetched[0] === 0 && c.prefetched.slice(1).every((x) => x > 0), `${what}: forward prefetch after the traced first step (${c.prefetched})`);
      assert.ok(c.prefetchedBackward[0] === 0 && c.prefetchedBackward.slice(1).every((x) => x > 0), `${what}: backward prefetch after the traced first step (${c.prefetchedBackward})`);
    }
    if (name.includes('noprefetch')) {
      assert.ok([...c.prefetched, ...c.prefetchedBackward].every((x) => x === 0), `${what}: nothing prefetched (${c.prefetched}, ${c.prefetchedBackward})`);
      assert.ok(c.peakLive < 0.5 * nonPersistent, `${what}: without prefetch few parameters are gathered at once (${c.peakLive} of ${nonPersistent})`);
      assert.ok(c.peakParamExtra < 0.5 * c.fullBytes, `${what}: peak gathered bytes ${c.peakParamExtra} below half the full model's ${c.fullBytes}`);
    }
    if (name === 'sgd-smallprefetch') assert.ok(c.peakLive <= 8_000 + n, `${what}: gathered elements within maxLiveParameters (${c.peakLive})`);
    if (name === 'retrace') assert.ok(c.prefetched[1] === 0 && c.prefetched[2] > 0, `${what}: prefetch off after the trace changed, back after re-tracing (${c.prefetched})`);
  }
}

