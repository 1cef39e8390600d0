/**
 * Which activation layout conv2d should run in. Times forward + backward (data and weights) of a
 * 3x3 conv through the native calls, for an NCHW input passed as is (gradient channels-last or
 * NCHW), the same input copied to channels-last first (what conv2d does), and all-NCHW / all-NHWC
 * activations. Cases run round-robin (the machine is shared); prints min / median ms.
 * Run: tsx bench/conv_layout.ts
 */
import { conv2d, native, randn, type Tensor, tidy } from '../src/index.ts';
import * as k from '../src/ops/kernels.ts';
import { emptyActivation } from '../src/ops/nchw.ts';
import { dtypeCode } from '../src/tensor/dtype.ts';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function timeAll(rounds: number, cases: Record<string, () => void>): Record<string, [number, number]> {
  const names = Object.keys(cases);
  const t: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < rounds + 3; r++) {
    for (const n of names) {
      const t0 = performance.now();
      tidy(cases[n]);
      if (r >= 3) t[n].push(performance.now() - t0);
    }
  }
  return Object.fromEntries(names.map((n) => [n, [Math.min(...t[n]), median(t[n])]]));
}

function layout(x: Tensor, last: boolean): Tensor {
  const c = emptyActivation(x.shape, x.dtype, last);
  k.copyInto(x, c);
  return c;
}

/** One training step of the conv: y = conv(x), gx = bwdData(g), gw = bwdWeights(x, g). */
function step(x: Tensor, w: Tensor, g: Tensor, yLast: boolean, gxLast: boolean): void {
  const [N, C, H, W] = x.shape;
  const [O, , kh, kw] = w.shape;
  const d = dtypeCode(x.dtype);
  const y = emptyActivation([N, O, H, W], x.dtype, yLast);
  native.conv2dForward(d, x.id, x.offset, x.strides, N, C, H, W, w.id, w.offset, O, kh, kw, 0, 0, y.id, y.offset, y.strides, 1, 1, 1, 1);
  const gx = emptyActivation(x.shape, x.dtype, gxLast);
  native.conv2dBackwardData(d, g.id, g.offset, g.strides, w.id, w.offset, gx.id, gx.offset, gx.strides, N, C, H, W, O, kh, kw, 1, 1, 1, 1);
  const gw = k.empty(w.shape, x.dtype);
  native.conv2dBackwardWeights(d, x.id, x.offset, x.strides, g.id, g.offset, g.strides, gw.id, gw.offset, 0, 0, N, C, H, W, O, kh, kw, 1, 1, 1, 1);
}

/** The same step through conv2d and the tape (x and w require grad). */
function train(x: Tensor, w: Tensor, g: Tensor): void {
  const xr = x.detach().requiresGrad_();
  const wr = w.detach().requiresGrad_();
  conv2d(xr, wr, null, { padding: 1 }).backward(g);
  for (const t of [xr, wr]) t.grad?.dispose();
}

const rounds = Number(process.env.ROUNDS ?? 40);
for (const [N, C, O, H] of [[32, 64, 64, 8], [32, 64, 64, 16], [8, 3, 16, 32]] as const) {
  tidy(() => {
    const x = randn([N, C, H, H]);
    const xl = layout(x, true);
    const w = randn([O, C, 3, 3]);
    const g = randn([N, O, H, H]);
    const gl = layout(g, true);
    const r = timeAll(rounds, {
      'NCHW x as is, NHWC grad': () => step(x, w, gl, true, true),
      'NCHW x as is, NCHW grad': () => step(x, w, g, true, true),
      'NCHW x copied to NHWC': () => step(layout(x, true), w, gl, true, true),
      'all NHWC': () => step(xl, w, gl, true, true),
      'all NCHW': () => step(x, w, g, false, false),
      'conv2d(), NCHW x, NCHW grad': () => train(x, w, g),
      'conv2d(), NCHW x, NHWC grad': () => train(x, w, gl),
      'conv2d(), NHWC x, NHWC grad': () => train(xl, w, gl),
    });
    console.log(`conv 3x3 pad 1, x [${N}, ${C}, ${H}, ${H}], ${O} outputs, f32, ${native.deviceInfo().threads} threads: fwd + bwd-data + bwd-weights, min / median ms`);
    for (const [name, [lo, mid]] of Object.entries(r)) console.log(`  ${name.padEnd(26)} ${lo.toFixed(3)} / ${mid.toFixed(3)}`);
  });
}
