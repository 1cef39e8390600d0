/**
 * Matrix products on oneDNN (f32, bf16) or the native f64 loop on the CPU, cuBLASLt on CUDA:
 * matmul (2-D and batched, with transposed operands passed as strides, never copied) and linear
 * (x @ Wᵀ + b, bias fused). f16 runs natively on CUDA (f32 accumulation); the CPU computes it in
 * f32 on the f16 values and rounds the result to f16 once. On CUDA, linear's bias goes to
 * cuBLASLt's epilogue in its own dtype and its gradient comes out of the weight-gradient product
 * (BGRADB), where the addon says it can (`matmulEpilogues`). linear's backward adds its
 * parameters' gradients straight into their `.grad` where the engine offers it (grad_into.ts).
 */
import { GRAD_WRITTEN, type GradInto, overlapsAny } from '../autograd/grad_into.ts';
import type { ActivationOffer } from '../autograd/grad_through.ts';
import { deviceOf, isCuda, kernelsOn, kernelsSay } from '../tensor/backend.ts';
import { type DType, dtypeCode, isFloat } from '../tensor/dtype.ts';
import { fmt, numel, sameShape } from '../tensor/shape.ts';
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { needsGrad, record, sumToShape } from './autograd_support.ts';
import { add } from './elementwise.ts';
import { intArg } from './int_args.ts';
import * as k from './kernels.ts';
import { applyLinearActivation, fusedLinearGelu, type LinearActivation, linearActivation, linearGeluGrad } from './linear_activation.ts';
import { emptyPitched, paddedPitch, rowPitchOf } from './row_pitch.ts';

export type { LinearActivation };

/** A batch of matrices inside a tensor: element (b, i, j) is at off + b*s[0] + i*s[1] + j*s[2]. */
interface Mats {
  t: Tensor;
  off: number;
  s: [number, number, number];
  rows: number;
  cols: number;
}

/** Views a [...batch, rows, cols] tensor as one batch stride, copying only when the batch dims don't collapse. */
function asMats(x: Tensor, batch: number, owned: Tensor[]): Mats {
  const n = x.ndim;
  const rows = x.shape[n - 2];
  const cols = x.shape[n - 1];
  let bs = 0;
  let ok = true;
  // The batch dims collapse when each steps over the next with no gap (size-1 and broadcast dims aside).
  let expect = -1;
  for (let i = n - 3; i >= 0; i--) {
    if (x.shape[i] === 1) continue;
    if (expect === -1) bs = x.strides[i];
    else if (x.strides[i] !== expect) ok = false;
    expect = x.strides[i] * x.shape[i];
  }
  if (!ok) {
    const c = k.copy(x);
    owned.push(c);
    return asMats(c, batch, owned);
  }
  const real = numel(x.shape.slice(0, n - 2));
  if (real !== batch && real !== 1) throw new Error('matmul: internal batch mismatch');
  return { t: x, off: x.offset, s: [real === 1 ? 0 : bs, x.strides[n - 2], x.strides[n - 1]], rows, cols };
}

function transposed(m: Mats): Mats {
  return { t: m.t, off: m.off, s: [m.s[0], m.s[2], m.s[1]], rows: m.cols, cols: m.rows };
}

/**
 * out[b] = a[b] @ b[b] (+ bias) returned with `shape`: contiguous [batch, M, N], or with `padRows`
 * (forward products: never a parameter's gradient, which must be dense) for one matrix with rows
 * not a multiple of 16 bytes on CUDA, rows at a padded pitch (row_pitch.ts). `addend` (of `shape`
 * and `dtype`; contiguous on CUDA, whose addon must say `matmulAddend`) is added before the one
 * rounding: cuBLASLt's C on CUDA; on the CPU the output starts as its copy and the product adds
 * to it (oneDNN's sum post-op).
 */
function product(
  a: Mats, b: Mats, batch: number, shape: number[], dtype: DType, bias: Tensor | null, padRows = false, addend: Tensor | null = null,
): Tensor {
  const dev = deviceOf('matmul', a.t, b.t, bias);
  if (dtype === 'f16' && !isCuda(dev)) return productInF32(a, b, batch, shape, bias, addend);
  const N = b.cols;
  const cpuAdd = addend !== null && !isCuda(dev);
  const pitch = padRows && !addend && batch === 1 && a.cols > 0 ? paddedPitch(a.rows, N, dtype, dev) : N;
  const out = cpuAdd
    ? k.copy(addend)
    : pitch === N
      ? k.empty(shape, dtype, undefined, false, dev)
      : emptyPitched(shape.slice(0, -1), N, pitch, dtype, dev);
  const kern = kernelsOn(dev);
  const code = dtypeCode(a.t.dtype);
  const outCode = dtypeCode(dtype);
  const biasId = bias ? bias.id : 0;
  const biasOff = bias ? bias.offset : 0;
  // The whole argument list every time (written out: a spread call costs an array and an iterator
  // per call). The CPU binding reads up to `accumulate`; for CUDA a bias in the output's 16-bit dtype
  // is said so (-1: f32), the output's row pitch is given when padded (0: N), and the addend (0: none).
  const ownBias = bias !== null && bias.dtype === dtype && biasDtype(dtype) !== dtype;
  kern.matmul(
    code, a.t.id, a.off, intArg(0, a.s), b.t.id, b.off, intArg(1, b.s), biasId, biasOff, outCode, out.id, 0, batch, a.rows, N, a.cols, cpuAdd,
    ownBias ? outCode : -1, false, pitch !== N ? pitch : 0, addend && !cpuAdd ? addend.id : 0, addend && !cpuAdd ? addend.offset : 0,
  );
  return out;
}

/** True where the addon's CUDA matmul takes a bias in the output's dtype and writes bias gradients (cuBLASLt epilogues). */
function epiloguesOn(dev: Device): boolean {
  return isCuda(dev) && kernelsSay(dev, 'matmulEpilogues');
}

/**
 * [M, N] = a @ b with `gradA` receiving a's row sums (over K) from the same cuBLASLt call, in the
 * output's dtype; false when cuBLASLt had no such epilogue (the product is there, the sums not).
 */
function productSummingA(
  a: Mats, b: Mats, shape: number[], dtype: DType, gradA: Tensor, addTo: Tensor | null,
): { out: Tensor; summed: boolean } {
  const dev = deviceOf('linear', a.t, b.t, gradA);
  const out = addTo ?? k.empty(shape, dtype, undefined, false, dev);
  const summed = kernelsOn(dev).matmul(
    dtypeCode(a.t.dtype), a.t.id, a.off, intArg(0, a.s), b.t.id, b.off, intArg(1, b.s), gradA.id, gradA.offset,
    dtypeCode(dtype), out.id, out.offset, 1, a.rows, b.cols, a.cols, addTo !== null, dtypeCode(dtype), true,
  ) as boolean;
  return { out, summed };
}

/** `out += a @ b` (accumulate) or `out = a @ b`, out a contiguous [a.rows, b.cols] tensor of the inputs' dtype. */
function productInto(a: Mats, b: Mats, out: Tensor, accumulate: boolean): void {
  const dev = deviceOf('linear', a.t, b.t, out);
  if (!out.isContiguous || out.numel !== a.rows * b.cols || out.dtype !== a.t.dtype) {
    throw new Error(`linear: internal: a product into ${fmt(out.shape)} ${out.dtype} that is not a contiguous [${a.rows}, ${b.cols}] ${a.t.dtype}`);
  }
  kernelsOn(dev).matmul(
    dtypeCode(a.t.dtype), a.t.id, a.off, intArg(0, a.s), b.t.id, b.off, intArg(1, b.s), 0, 0,
    dtypeCode(out.dtype), out.id, out.offset, 1, a.rows, b.cols, a.cols, accumulate,
  );
}

/**
 * f16 on the CPU (DeepSpeed's fp16 mode; oneDNN's CPU matmul has no f16 path): the operands
 * widened to f32 for the call only, the f32 product rounded to f16 once. Autograd keeps the f16
 * tensors, never these copies.
 */
function productInF32(a: Mats, b: Mats, batch: number, shape: number[], bias: Tensor | null, addend: Tensor | null = null): Tensor {
  const addend32 = addend ? k.copy(addend, 'f32') : null;
  const out32 = productF32(a, b, batch, shape, bias, addend32);
  addend32?.dispose();
  const out = k.copy(out32, 'f16');
  out32.dispose();
  return out;
}

/** a @ b (+ f32 bias) (+ f32 addend) in f32 from bf16 (oneDNN writes f32) or f16 (widened) operands on the CPU, not rounded. */
function productF32(a: Mats, b: Mats, batch: number, shape: number[], bias: Tensor | null, addend: Tensor | null = null): Tensor {
  if (a.t.dtype === 'bf16') return product(a, b, batch, shape, 'f32', bias, false, addend);
  const owned: Tensor[] = [];
  const out = product(widened(a, batch, owned), widened(b, batch, owned), batch, shape, 'f32', bias, false, addend);
  for (const t of owned) t.dispose();
  return out;
}

/** A contiguous f32 copy of the matrices `m` describes (one matrix when its batch is broadcast). */
function widened(m: Mats, batch: number, owned: Tensor[]): Mats {
  const n = batch > 1 && m.s[0] !== 0 ? batch : 1;
  const view = m.t.alias([n, m.rows, m.cols], m.s, m.off);
  const c = k.copy(view, 'f32');
  view.dispose();
  owned.push(c);
  return { t: c, off: 0, s: [n === 1 ? 0 : m.rows * m.cols, m.cols, 1], rows: m.rows, cols: m.cols };
}

/** The dtype a product's bias is passed in: f32 for 16-bit floats (as the kernels add it), else the inputs'. */
function biasDtype(d: DType): DType {
  return d === 'bf16' || d === 'f16' ? 'f32' : d;
}

function checkOperands(op: string, a: Tensor, b: Tensor): void {
  if (a.ndim < 2 || b.ndim < 2) throw new Error(`${op}: needs tensors of rank >= 2, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  if (!isFloat(a.dtype) || a.dtype !== b.dtype) {
    throw new Error(`${op}: needs two f32, bf16, f16 or f64 tensors of one dtype, got ${a.dtype} and ${b.dtype}`);
  }
}

/**
 * Matrix product of the last two dims, batch dims broadcast.
 * @example
 * const y = matmul(x, w.transpose(0, 1)); // transposes are strides, not copies
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  checkOperands('matmul', a, b);
  const M = a.shape[a.ndim - 2];
  const K = a.shape[a.ndim - 1];
  const N = b.shape[b.ndim - 1];
  if (b.shape[b.ndim - 2] !== K) {
    throw new Error(`matmul: inner dims differ: ${fmt(a.shape)} @ ${fmt(b.shape)} (${K} vs ${b.shape[b.ndim - 2]})`);
  }
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const nb = Math.max(aBatch.length, bBatch.length);
  const batchShape: number[] = [];
  for (let i = 0; i < nb; i++) {
    const x = aBatch[aBatch.length - nb + i] ?? 1;
    const y = bBatch[bBatch.length - nb + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`matmul: batch dims of ${fmt(a.shape)} and ${fmt(b.shape)} do not broadcast`);
    batchShape.push(Math.max(x, y));
  }
  const batch = numel(batchShape);
  const aReal = numel(aBatch);
  const bReal = numel(bBatch);
  if ((aReal !== batch && aReal !== 1) || (bReal !== batch && bReal !== 1)) {
    throw new Error(`matmul: batch dims of ${fmt(a.shape)} and ${fmt(b.shape)} only broadcast as a whole`);
  }
  const owned: Tensor[] = [];
  let out: Tensor;
  // A 2-D right operand: fold a's batch into its rows, one large product instead of many small ones.
  if (bReal === 1 && aReal === batch && batch > 1 && isFoldable(a)) {
    const a2 = a.alias([batch * M, K], [a.strides[a.ndim - 2], a.strides[a.ndim - 1]], a.offset);
    owned.push(a2);
    out = product(asMats(a2, 1, owned), asMats(b, 1, owned), 1, [...batchShape, M, N], a.dtype, null, true);
  } else {
    out = product(asMats(a, batch, owned), asMats(b, batch, owned), batch, [...batchShape, M, N], a.dtype, null, true);
  }
  for (const t of owned) t.dispose();
  return record('matmul', [a, b], out, (node) => {
    const sa = b.requiresGrad ? node.save(a) : null;
    const sb = a.requiresGrad ? node.save(b) : null;
    return (g) => {
      const own: Tensor[] = [];
      const gm = asMats(g, batch, own);
      let ga: Tensor | null = null;
      let gb: Tensor | null = null;
      if (sb) {
        const full = product(gm, transposed(asMats(sb, batch, own)), batch, [...batchShape, M, K], a.dtype, null);
        ga = sumToShape(full, a.shape);
        if (ga !== full) own.push(full);
      }
      if (sa) {
        const full = product(transposed(asMats(sa, batch, own)), gm, batch, [...batchShape, K, N], a.dtype, null);
        gb = sumToShape(full, b.shape);
        if (gb !== full) own.push(full);
      }
      for (const t of own) t.dispose();
      return [ga, gb];
    };
  });
}

/** True when a's batch dims and row dim form one uniform stride (so [..., M, K] is [batch*M, K]). */
function isFoldable(a: Tensor): boolean {
  let expect = a.strides[a.ndim - 2] * a.shape[a.ndim - 2];
  for (let i = a.ndim - 3; i >= 0; i--) {
    if (a.shape[i] === 1) continue;
    if (a.strides[i] !== expect) return false;
    expect *= a.shape[i];
  }
  return true;
}

/** Options of `linear`. */
export interface LinearOpOptions {
  /** Applied to the result, fused into the product where the device can (see linear_activation.ts). */
  activation?: LinearActivation;
  /** With an activation and a graph: maps the product (x @ Wᵀ + b) before the activation reads it (zero-bubble's weight-gradient deferral). */
  beforeActivation?: (pre: Tensor) => Tensor;
  /**
   * Added to the result: residual + (x @ Wᵀ + b), a residual connection; the output's shape, x's dtype and
   * device; not with an activation. Fused into the product on CUDA (see `linear`).
   */
  residual?: Tensor;
}

/** Runs linear's product itself (an activation fused in): returns the tensor to record, or null to run the plain product. */
type FusedProduct = (a: Mats, b: Mats, bias: Tensor | null, shape: number[], dev: Device) => Tensor | null;

/**
 * y = x @ Wᵀ + b with W of shape [out, in] (PyTorch's layout); x is [..., in]. With
 * `activation: 'gelu'`, y = gelu(x @ Wᵀ + b) (GELU's tanh form); bf16/f16 round the f32 sum once,
 * after GELU (cuBLASLt's epilogue on CUDA, the same steps on the CPU), so they are within one rounding
 * of the pre-activation of `gelu(linear(x, weight, bias))`; f32 and f64 run exactly that.
 * With `residual`, y = residual + x @ Wᵀ + b summed in f32 and rounded once, so bf16/f16 are
 * within one rounding of `add(residual, linear(x, weight, bias))`: on CUDA one cuBLASLt call (the
 * residual is its C, beta = 1; a residual that is not contiguous takes the separate add), on the
 * CPU for bf16/f16 the output starts as the residual's copy and oneDNN's product adds to it (the
 * same sum in another order). f32 and f64 run the separate add on the CPU (its bits unchanged).
 * @example
 * const y = linear(x, weight, bias);
 * const h = linear(x, fcWeight, fcBias, { activation: 'gelu' });
 * const out = linear(y, projWeight, projBias, { residual: x });   // x + y Wᵀ + b
 */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null, opts: LinearOpOptions = {}): Tensor {
  const residual = opts.residual;
  if (residual !== undefined) return linearResidual(x, weight, bias, residual, opts);
  if (linearActivation(opts.activation, 'linear') === null) return linearRecorded(x, weight, bias, null);
  let fused = null as Tensor | null; // the activated result, when the product fused it
  const pre = linearRecorded(x, weight, bias, (a, b, biasF, shape, dev) => {
    const r = fusedLinearGelu(a, b, biasF, shape, x.dtype, dev, needsGrad(x, weight, bias), (wa, wb, wbias, ws) => productF32(wa, wb, 1, ws, wbias));
    fused = r?.out ?? null;
    // Without a graph there is no pre-activation to keep: the activated result is linear's.
    return r ? (r.pre ?? r.out) : null;
  });
  if (fused === pre) return pre;
  return applyLinearActivation(opts.beforeActivation ? opts.beforeActivation(pre) : pre, fused);
}

/** `linear` with a residual: fused where the device can add it in the product, else the separate add. */
function linearResidual(x: Tensor, weight: Tensor, bias: Tensor | null, residual: Tensor, opts: LinearOpOptions): Tensor {
  const shape = [...x.shape.slice(0, -1), weight.shape[0]];
  if (!sameShape(residual.shape, shape) || residual.dtype !== x.dtype) {
    throw new Error(`linear: residual ${residual.dtype} ${fmt(residual.shape)} must be the output's ${x.dtype} ${fmt(shape)}`);
  }
  if (linearActivation(opts.activation, 'linear') !== null) throw new Error('linear: a residual with an activation (add it to the activated output yourself)');
  const dev = deviceOf('linear', x, weight, bias, residual);
  const nonEmpty = numel(shape) > 0 && x.shape[x.ndim - 1] > 0;
  const fuse = isCuda(dev)
    ? kernelsSay(dev, 'matmulAddend') && residual.isContiguous && nonEmpty
    : (x.dtype === 'bf16' || x.dtype === 'f16') && nonEmpty;
  if (fuse) return linearRecorded(x, weight, bias, null, residual);
  return add(residual, linearRecorded(x, weight, bias, null));
}

function linearRecorded(x: Tensor, weight: Tensor, bias: Tensor | null, fuse: FusedProduct | null, residual: Tensor | null = null): Tensor {
  if (x.ndim < 1 || weight.ndim !== 2) throw new Error(`linear: needs x [..., in] and weight [out, in], got ${fmt(x.shape)} and ${fmt(weight.shape)}`);
  const [outF, inF] = weight.shape;
  if (x.shape[x.ndim - 1] !== inF) throw new Error(`linear: x ${fmt(x.shape)} has ${x.shape[x.ndim - 1]} features, weight ${fmt(weight.shape)} expects ${inF}`);
  if (bias && (bias.ndim !== 1 || bias.shape[0] !== outF)) throw new Error(`linear: bias ${fmt(bias.shape)} should be [${outF}]`);
  if (x.dtype !== weight.dtype) throw new Error(`linear: x is ${x.dtype}, weight is ${weight.dtype}`);
  if (!isFloat(x.dtype)) throw new Error(`linear: needs f32, bf16, f16 or f64, got ${x.dtype}`);
  const lead = x.shape.slice(0, -1);
  const M = numel(lead);
  const owned: Tensor[] = [];
  // x as [M, in] rows: its own strides when the leading dims fold (no view object: the product
  // only reads the storage, offset and strides), else a dense copy.
  let xm: Mats;
  if (x.ndim >= 2 && isFoldable(x)) {
    xm = { t: x, off: x.offset, s: [0, x.strides[x.ndim - 2], x.strides[x.ndim - 1]], rows: M, cols: inF };
  } else {
    const x2 = k.copy(x).alias([M, inF], [inF, 1], 0);
    owned.push(x2);
    xm = asMats(x2, 1, owned);
  }
  const wT = transposed(asMats(weight, 1, owned));
  const dev = deviceOf('linear', x, weight, bias);
  const epilogues = epiloguesOn(dev);
  // CUDA takes the bias in the output's dtype as it is (cuBLASLt's bias epilogue): no cast per forward.
  const keepBias = bias !== null && (bias.dtype === biasDtype(x.dtype) || (epilogues && bias.dtype === x.dtype));
  const biasF = bias && !keepBias ? k.copy(bias, biasDtype(x.dtype)) : bias;
  if (biasF && biasF !== bias) owned.push(biasF);
  const out = fuse?.(xm, wT, biasF, [...lead, outF], dev) ?? product(xm, wT, 1, [...lead, outF], x.dtype, biasF, true, residual);
  for (const t of owned) t.dispose();
  if (residual) {
    // The residual's gradient is the output's, as add's backward hands it on.
    return record('linear', [x, weight, bias, residual], out, (node) => {
      const sx = weight.requiresGrad ? node.save(x) : null;
      const sw = x.requiresGrad ? node.save(weight) : null;
      node.writesGradInto = true;
      node.appliesActivationGrad = true;
      return (g, into, through) => [...linearBackward(g, into, through, { x, weight, bias, sx, sw, M, dev, epilogues }), residual.requiresGrad ? g : null];
    });
  }
  return record('linear', [x, weight, bias], out, (node) => {
    const sx = weight.requiresGrad ? node.save(x) : null;
    const sw = x.requiresGrad ? node.save(weight) : null;
    node.writesGradInto = true;
    node.appliesActivationGrad = true;
    return (g, into, through) => linearBackward(g, into, through, { x, weight, bias, sx, sw, M, dev, epilogues });
  });
}

interface LinearSaved {
  x: Tensor;
  weight: Tensor;
  bias: Tensor | null;
  sx: Tensor | null;
  sw: Tensor | null;
  M: number;
  dev: Device;
  epilogues: boolean;
}

/**
 * A product adds into a destination when it is its own dense [rows, cols] block of the operands'
 * dtype and not read here (a module-level function: a closure per call costs tsx's keepNames a defineProperty).
 */
function usableInto(d: GradInto | null | undefined, addable: boolean, reads: (Tensor | null)[], dtype: DType): Tensor | null {
  return d && !d.shared && addable && d.grad.dtype === dtype && !overlapsAny(d.grad, reads) ? d.grad : null;
}

/**
 * linear's backward. Given a leaf's `.grad` (`into`), a product adds into it (beta = 1) and the
 * bias gradient goes straight there when that `.grad` is known to hold zeros (cuBLASLt's BGRADB
 * overwrites; on the CPU the reduction writes it): GRAD_WRITTEN is returned for those. Offered x's
 * activation (`through`, a fused GELU), the input-gradient product applies its derivative in its
 * epilogue where it can and returns the gradient of GELU's input (grad_through.ts).
 */
function linearBackward(
  g: Tensor,
  into: readonly (GradInto | null)[],
  through: readonly (ActivationOffer | null)[],
  s: LinearSaved,
): (Tensor | null | typeof GRAD_WRITTEN)[] {
  const { x, weight, bias, sx, sw, M, dev, epilogues } = s;
  const [outF, inF] = weight.shape;
  const own: Tensor[] = [];
  // Rows at a padded pitch (a CUDA product's, row_pitch.ts) go to cuBLASLt as the leading dimension, not copied.
  const gPitch = isCuda(dev) ? rowPitchOf(g) : -1;
  const g2 = gPitch > 0 ? g : k.asContiguous(g);
  if (g2 !== g) own.push(g2);
  const pitch = gPitch > 0 ? gPitch : outF;
  const reads = [g2, sx, sw];
  const addable = M > 0 && !(x.dtype === 'f16' && !isCuda(dev));
  const gm: Mats = { t: g2, off: g2.offset, s: [0, pitch, 1], rows: M, cols: outF };
  const xInto = usableInto(into[0], addable, reads, x.dtype);
  const wInto = usableInto(into[1], addable, reads, x.dtype);
  let gx: Tensor | null | typeof GRAD_WRITTEN = null;
  const act = sw ? through[0] : null;
  const geluInputGrad =
    sw && act?.kind === 'gelu' ? linearGeluGrad(gm, asMats(sw, 1, own), act.input, [...x.shape], dev, (wa, wb, _b, ws) => productF32(wa, wb, 1, ws, null)) : null;
  if (geluInputGrad) {
    act?.take();
    gx = geluInputGrad;
  } else if (sw && xInto) {
    productInto(gm, asMats(sw, 1, own), xInto, true);
    gx = GRAD_WRITTEN;
  } else if (sw) {
    gx = product(gm, asMats(sw, 1, own), 1, [...x.shape], x.dtype, null);
  }
  let gw: Tensor | null | typeof GRAD_WRITTEN = null;
  let gbias: Tensor | null | typeof GRAD_WRITTEN = null;
  const bInto = bias?.requiresGrad && into[2]?.zero && !overlapsAny(into[2].grad, reads) ? into[2].grad : null;
  if (sx) {
    const xc = k.asContiguous(sx);
    if (xc !== sx) own.push(xc);
    const xm: Mats = { t: xc, off: xc.offset, s: [0, inF, 1], rows: M, cols: inF };
    // The bias gradient (g's column sums) from the weight-gradient product itself (cuBLASLt's BGRADB).
    if (bias?.requiresGrad && epilogues && bias.dtype === x.dtype && x.dtype !== 'f64' && M > 0 && outF > 0 && inF > 0) {
      const target = bInto ?? k.empty([outF], x.dtype, undefined, false, dev);
      const summed = productSummingA(transposed(gm), xm, [outF, inF], x.dtype, target, wInto);
      gw = wInto ? GRAD_WRITTEN : summed.out;
      if (summed.summed) gbias = bInto ? GRAD_WRITTEN : target;
      else if (!bInto) target.dispose();
    } else if (wInto) {
      productInto(transposed(gm), xm, wInto, true);
      gw = GRAD_WRITTEN;
    } else {
      gw = product(transposed(gm), xm, 1, [outF, inF], x.dtype, null);
    }
  }
  if (bias?.requiresGrad && !gbias) {
    if (bInto && bias.dtype === x.dtype && pitch === outF) {
      // Known zeros: the column sums written over them are the sum.
      kernelsOn(dev).reduce(k.Reduce.sum, dtypeCode(x.dtype), g2.id, g2.offset, bInto.id, bInto.offset, 1, M, outF, 1);
      gbias = GRAD_WRITTEN;
    } else {
      const rows = g2.alias([M, outF], [pitch, 1], g2.offset);
      const r = k.reduce(k.Reduce.sum, rows, [0]);
      rows.dispose();
      gbias = r.dtype !== bias.dtype ? k.copy(r, bias.dtype) : r;
      if (gbias !== r) r.dispose();
    }
  }
  for (const t of own) t.dispose();
  return [gx, gw, gbias];
}
