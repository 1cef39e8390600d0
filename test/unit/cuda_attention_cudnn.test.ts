/**
 * cuDNN's fused attention (native/cuda/attention_cudnn.cc; the default family since stop 21, and
 * MESHTRAIN_ATTENTION=cudnn): the SDPA forward and backward graphs through cuDNN's graph API. On the emulated device the
 * reference cuDNN (native/cuda/emu/cudnn_backend.cc) checks every descriptor and runs the graph as
 * written, so these tests prove the graphs compute attention with our uids, strides, lse convention
 * and variant packs; they do not prove the real cuDNN accepts the graphs (the GPU run does).
 * Output and gradients of sum(attention(q, k, v) * w) against a CPU f64 reference fed the same
 * rounded inputs, max |diff| / max(1, max |ref|) within cuda_attention's 1e-2 for 16-bit inputs;
 * every compared call shows cuDNN ran (a census 'library' entry, no attention kernel). bf16 and
 * f16, head dims 64 and 128, causal and not, Tq != Tk, a custom scale, q/k/v as strided views of
 * one [B, T, 3C] projection; the backward graph through the f32 dQ accumulator
 * (MESHTRAIN_CUDNN_ATTENTION_DETERMINISTIC=0; the default is the deterministic one). With
 * MESHTRAIN_ATTENTION unset: cuDNN runs head dim 64, fa2 head dim 32, and two backward runs give
 * the same bits. Plans: one per problem and pass, reused by later calls. Refusals
 * (head dim 32, rows not 16-byte aligned, no engine offered: emulated only) fall back to the fa2
 * kernels with the reason recorded, and the results stay right. In a CUDA graph capture a built plan is recorded and
 * its replays equal the eager call bit for bit; a plan not built yet is not built there (fa2 runs).
 * Without a usable device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type CensusEntry, captureCudaGraph, copyInPlace, cudaCensus, cudaDeviceProperties, cudaIsAvailable, type DType, manualSeed, mul, native, noGrad, qkvAttention, randn,
  scaledDotProductAttention, sum, type Tensor, tidy,
} from '../../src/index.ts';
import type { Device } from '../../src/tensor/storage.ts';
import { maxRelErr } from '../helpers/cuda_parity.ts';
import { withEnv } from '../helpers/env.ts';

const DEV = 'cuda:0';
const TOL = 1e-2;

type Attn = (...xs: Tensor[]) => Tensor;
interface Stats {
  plansBuilt: number;
  calls: number;
  refusals: number;
  lastRefusal: string;
}
const stats = (): Stats => native.cuda.attentionCudnnStats();

/** What ran: cuDNN library calls and attention kernel launches (any family) in a census. */
function ran(entries: CensusEntry[]): { cudnn: number; kernels: number } {
  const cudnn = entries.filter((e) => e.kind === 'library' && e.name.startsWith('cudnn attention')).reduce((a, e) => a + e.count, 0);
  const kernels = entries
    .filter((e) => e.kind === 'kernel' && /cuda\/attention(_\w+)?\.cu/.test(e.site))
    .reduce((a, e) => a + e.count, 0);
  return { cudnn, kernels };
}

/** Output then gradients of sum(f(xs) * w) on `device` in `dtype`, under MESHTRAIN_ATTENTION=cudnn; the census of it. */
function run(f: Attn, base: Tensor[], w: Tensor, device: Device, dtype: DType, env: Record<string, string> = {}) {
  return withEnv({ MESHTRAIN_ATTENTION: 'cudnn', ...env }, () => {
    let out: number[][] = [];
    const go = () => {
      const leaves = base.map((x) => noGrad(() => x.to(dtype).to(device)).requiresGrad_(true));
      const y = f(...leaves);
      sum(mul(y, noGrad(() => w.to(dtype).to(device)))).backward();
      out = [y.toList() as number[], ...leaves.map((x) => (x.grad as Tensor).toList() as number[])];
    };
    if (device === 'cpu') {
      go();
      return { out, entries: [] as CensusEntry[] };
    }
    const entries = cudaCensus(go).entries;
    return { out, entries };
  });
}

/** cuDNN's output and gradients against f64; asserts the bound and (unless refused) that cuDNN ran. Returns the largest error. */
function check(name: string, f: Attn, shapes: number[][], outShape: number[], dtype: DType, expectCudnn = true, env = {}): number {
  return tidy(() => {
    const base = shapes.map((s) => noGrad(() => randn(s).to(dtype)));
    const w = noGrad(() => randn(outShape).to(dtype));
    const got = run(f, base, w, DEV, dtype, env);
    const ref = run(f, base, w, 'cpu', 'f64').out;
    const r = ran(got.entries);
    if (expectCudnn)
      assert.equal(r, { cudnn: 2, kernels: 0 }, `${name} ${dtype}: expected the cuDNN forward and backward and no attention kernel (last refusal: ${stats().lastRefusal})`);
    else assert.ok(r.cudnn === 0 && r.kernels > 0, `${name} ${dtype}: expected the fallback kernels, saw ${JSON.stringify(r)}`);
    let worst = 0;
    ref.forEach((want, i) => {
      const e = maxRelErr(got.out[i], want, 1);
      worst = Math.max(worst, e);
      assert.ok(e <= TOL, `${name} ${dtype}: ${i === 0 ? 'output' : `gradient of input ${i - 1}`} differs from f64 by ${e} (bound ${TOL})`);
    });
    return worst;
  });
}

const sdpa = (causal: boolean, scale?: number): Attn => (q, k, v) => scaledDotProductAttention(q, k, v, { causal, scale });

if (!cudaIsAvailable()) {
  test('cuDNN attention', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_attention_cudnn: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  manualSeed(5);
  const emulated = cudaDeviceProperties(DEV).name.includes('emulated');

  for (const dtype of ['bf16', 'f16'] as DType[]) {
    test(`cuDNN forward and backward = f64, ${dtype}: head dims 64/128, causal and not`, () => {
      let worst = 0;
      for (const D of [64, 128]) {
        const s = D === 64 ? [2, 3, 19, D] : [1, 2, 33, D];
        for (const causal of [true, false]) worst = Math.max(worst, check(`[${s}] causal ${causal}`, sdpa(causal), [s, s, s], s, dtype));
      }
      console.log(`  ${dtype}: max error vs f64 ${worst.toExponential(2)} (4 cases)`);
    });
  }

  test('cuDNN with Tq != Tk (top-left causal) and a custom scale, bf16', () => {
    let worst = 0;
    for (const causal of [true, false]) {
      worst = Math.max(worst, check(`Tq 24 < Tk 40, causal ${causal}`, sdpa(causal), [[1, 2, 24, 64], [1, 2, 40, 64], [1, 2, 40, 64]], [1, 2, 24, 64], 'bf16'));
      worst = Math.max(worst, check(`Tq 40 > Tk 8, causal ${causal}`, sdpa(causal), [[1, 2, 40, 64], [1, 2, 8, 64], [1, 2, 8, 64]], [1, 2, 40, 64], 'bf16'));
    }
    worst = Math.max(worst, check('scale 0.3', sdpa(true, 0.3), [[1, 2, 17, 128], [1, 2, 17, 128], [1, 2, 17, 128]], [1, 2, 17, 128], 'bf16'));
    console.log(`  Tq != Tk, scale: max error vs f64 ${worst.toExponential(2)} (5 cases)`);
  });

  test('cuDNN through qkvAttention: q, k, v strided views of one [B, T, 3C] projection (as GPT makes them)', () => {
    let worst = 0;
    for (const dtype of ['bf16', 'f16'] as DType[]) {
      const [B, T, H, D] = [2, 21, 2, 64];
      const f = (x: Tensor) => qkvAttention(x, H, { causal: true });
      worst = Math.max(worst, check(`qkv [${B}, ${T}, 3 x ${H} x ${D}]`, f, [[B, T, 3 * H * D]], [B, T, H * D], dtype));
    }
    console.log(`  qkv views: max error vs f64 ${worst.toExponential(2)} (2 cases)`);
  });

  test('MESHTRAIN_CUDNN_ATTENTION_DETERMINISTIC=0: the backward graph through the f32 dQ accumulator, its own plan, = f64', () => {
    const acc = { MESHTRAIN_CUDNN_ATTENTION_DETERMINISTIC: '0' };
    const s = [1, 2, 23, 64];
    const before = stats().plansBuilt;
    let worst = 0;
    for (const causal of [true, false]) worst = Math.max(worst, check(`accumulator causal ${causal}`, sdpa(causal), [s, s, s], s, 'bf16', true, acc));
    assert.is(stats().plansBuilt - before, 4, 'a forward and an accumulator backward plan per problem');
    console.log(`  accumulator backward: max error vs f64 ${worst.toExponential(2)} (2 cases)`);
  });

  test('the default (MESHTRAIN_ATTENTION unset): cuDNN at head dim 64, fa2 at 32; two backward runs give the same bits', () => {
    tidy(() => {
      withEnv({ MESHTRAIN_ATTENTION: undefined, MESHTRAIN_CUDNN_ATTENTION_DETERMINISTIC: undefined }, () => {
        const grads = (D: number) => {
          const s = [2, 3, 40, D];
          manualSeed(D);
          const base = [0, 1, 2].map(() => randn(s, { device: DEV }).to('bf16'));
          const w = randn(s, { device: DEV }).to('bf16');
          const once = () => {
            const leaves = base.map((x) => x.detach().requiresGrad_(true));
            sum(mul(scaledDotProductAttention(leaves[0], leaves[1], leaves[2], { causal: true }), w)).backward();
            return leaves.map((x) => (x.grad as Tensor).toList() as number[]);
          };
          const first = cudaCensus(once);
          return { first: first.result, again: once(), r: ran(first.entries) };
        };
        const d64 = grads(64);
        assert.equal(d64.r, { cudnn: 2, kernels: 0 }, `head dim 64: cuDNN forward and backward (last refusal: ${stats().lastRefusal})`);
        assert.equal(d64.again, d64.first, 'head dim 64: the same gradient bits on a second run');
        const d32 = grads(32);
        assert.ok(d32.r.cudnn === 0 && d32.r.kernels > 0, `head dim 32: the fa2/WMMA kernels, saw ${JSON.stringify(d32.r)}`);
      });
    });
  });

  test('plans: built once per problem and pass, reused by later calls; a new shape builds two more', () => {
    tidy(() => {
      const s = [1, 2, 11, 64];
      const base = [0, 1, 2].map(() => randn(s));
      const w = randn(s);
      const before = stats();
      run(sdpa(true), base, w, DEV, 'bf16');
      const first = stats();
      assert.equal(first.plansBuilt - before.plansBuilt, 2, 'a new problem builds a forward and a backward plan');
      for (let i = 0; i < 3; i++) run(sdpa(true), base, w, DEV, 'bf16');
      const again = stats();
      assert.equal(again.plansBuilt, first.plansBuilt, 'the same problem builds nothing more');
      assert.equal(again.calls - first.calls, 6, 'three more forwards and backwards ran on cuDNN');
      run(sdpa(false), base, w, DEV, 'bf16');
      assert.equal(stats().plansBuilt - again.plansBuilt, 2, 'not causal is another problem');
    });
  });

  test('refusals fall back to the fa2 kernels with the reason recorded: head dim 32, unaligned rows, no engine', () => {
    const refused = (label: string, f: () => void, reason: RegExp) => {
      const n = stats().refusals;
      f();
      const st = stats();
      assert.ok(st.refusals > n, `${label}: no refusal recorded`);
      assert.match(st.lastRefusal, reason, `${label}: reason`);
    };
    refused('head dim 32', () => check('D 32', sdpa(true), [[1, 2, 9, 32], [1, 2, 9, 32], [1, 2, 9, 32]], [1, 2, 9, 32], 'bf16', false), /head dim 32/);
    // Rows 3C + 3 apart: not 16-byte aligned, which the graph's tensors declare.
    const [B, T, H, D] = [1, 13, 2, 64];
    const W = 3 * H * D;
    const narrowed = (x: Tensor) => qkvAttention(x.narrow(-1, 1, W), H, { causal: true });
    refused('unaligned', () => check('narrowed qkv', narrowed, [[B, T, W + 3]], [B, T, H * D], 'bf16', false), /multiple of 8/);
    // The reference cuDNN's switch (a real cuDNN offers its engines): the caller's no-engine path.
    if (emulated) {
      const s = [1, 1, 7, 64];
      const none = { MESHTRAIN_CUDA_EMU_CUDNN_ENGINES: '0' };
      refused('no engine', () => check('no engine', sdpa(true), [s, s, s], s, 'bf16', false, none), /no engine/);
    }
  });

  test('CUDA graph capture: a built plan is recorded and replays as the eager call; an unbuilt one takes fa2 there', () => {
    tidy(() => {
      const s = [1, 2, 26, 64];
      const [q, k, v] = [0, 1, 2].map(() => randn(s, { device: DEV }).to('bf16'));
      const attn = () => scaledDotProductAttention(q, k, v, { causal: true });
      withEnv({ MESHTRAIN_ATTENTION: 'cudnn' }, () => {
        const eager = noGrad(attn).toList();
        const before = stats();
        const { result: g, entries } = cudaCensus(() => captureCudaGraph(() => noGrad(attn)));
        try {
          assert.equal(ran(entries), { cudnn: 1, kernels: 0 }, 'the capture records the cuDNN call');
          assert.is(stats().plansBuilt, before.plansBuilt, 'no plan built in the capture');
          noGrad(() => copyInPlace(q, randn(s, { device: DEV }).to('bf16')));
          g.replay();
          const fresh = noGrad(attn).toList();
          assert.equal(g.output.toList(), fresh, 'a replay reads the current q, as the eager call');
          assert.not.equal(fresh, eager, 'q changed');
        } finally {
          g.dispose();
        }
        // A problem met first inside a capture: not built there; fa2 runs and the refusal says why.
        const t = [1, 2, 27, 64];
        const [a, b, c] = [0, 1, 2].map(() => randn(t, { device: DEV }).to('bf16'));
        const { result: h, entries: e2 } = cudaCensus(() => captureCudaGraph(() => noGrad(() => scaledDotProductAttention(a, b, c, { causal: true }))));
        h.dispose();
        const r = ran(e2);
        assert.ok(r.cudnn === 0 && r.kernels > 0, `fa2 in the capture, saw ${JSON.stringify(r)}`);
        assert.match(stats().lastRefusal, /before the graph capture/);
      });
    });
  });
}

test.run();
