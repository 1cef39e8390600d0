/** Differentiable element-wise ops with broadcasting, scalar forms and casts. */
import { isGradEnabled } from '../autograd/grad_mode.ts';
import { deviceOf } from '../tensor/backend.ts';
import { checkDType, type DType, isFloat } from '../tensor/dtype.ts';
import { fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { record, sumToShape } from './autograd_support.ts';
import * as k from './kernels.ts';

function checkTensor(x: unknown, op: string): Tensor {
  if (x === null || typeof x !== 'object' || !('shape' in x) || !('dtype' in x)) {
    throw new Error(`${op}: expected a Tensor, got ${x === null ? 'null' : typeof x}`);
  }
  return x as Tensor;
}

function checkFinite(v: number, op: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${op}: the scalar must be a finite number, got ${v}`);
  return v;
}

function checkFloat(x: Tensor, op: string): void {
  if (!isFloat(x.dtype)) throw new Error(`${op}: needs a floating-point tensor, got ${x.dtype} ${fmt(x.shape)}`);
}

export function add(a: Tensor, b: Tensor | number): Tensor {
  checkTensor(a, 'add');
  if (typeof b === 'number') return addScalar(a, b);
  const out = k.binary(k.Binary.add, a, b, 'add');
  return record('add', [a, b], out, () => (g) => [sumToShape(g, a.shape), sumToShape(g, b.shape)]);
}

export function sub(a: Tensor, b: Tensor | number): Tensor {
  checkTensor(a, 'sub');
  if (typeof b === 'number') return addScalar(a, -checkFinite(b, 'sub'));
  const out = k.binary(k.Binary.sub, a, b, 'sub');
  return record('sub', [a, b], out, () => (g) => {
    const nb = b.requiresGrad ? k.unary(k.Unary.neg, g) : null;
    const gb = nb ? sumToShape(nb, b.shape) : null;
    return [sumToShape(g, a.shape), gb];
  });
}

export function mul(a: Tensor, b: Tensor | number): Tensor {
  checkTensor(a, 'mul');
  if (typeof b === 'number') return mulScalar(a, b);
  const out = k.binary(k.Binary.mul, a, b, 'mul');
  return record('mul', [a, b], out, (node) => {
    const sa = b.requiresGrad ? node.save(a) : null;
    const sb = a.requiresGrad ? node.save(b) : null;
    return (g) => [
      sb ? sumToShape(k.binary(k.Binary.mul, g, sb, 'mul'), a.shape) : null,
      sa ? sumToShape(k.binary(k.Binary.mul, g, sa, 'mul'), b.shape) : null,
    ];
  });
}

export function div(a: Tensor, b: Tensor | number): Tensor {
  checkTensor(a, 'div');
  if (typeof b === 'number') {
    if (checkFinite(b, 'div') === 0) throw new Error('div: division by the scalar 0');
    return mulScalar(a, 1 / b);
  }
  const out = k.binary(k.Binary.div, a, b, 'div');
  return record('div', [a, b], out, (node) => {
    const sb = node.save(b);
    const so = b.requiresGrad ? node.save(out) : null;
    return (g) => {
      const ga = k.binary(k.Binary.div, g, sb, 'div');
      // d(a/b)/db = -(a/b)/b
      const gb = so ? k.unary(k.Unary.neg, k.binary(k.Binary.mul, ga, so, 'mul')) : null;
      return [sumToShape(ga, a.shape), gb ? sumToShape(gb, b.shape) : null];
    };
  });
}

export function addScalar(x: Tensor, s: number): Tensor {
  checkFinite(s, 'add');
  const out = k.unary(k.Unary.addScalar, x, s);
  return record('addScalar', [x], out, () => (g) => [g]);
}

export function mulScalar(x: Tensor, s: number): Tensor {
  checkFinite(s, 'mul');
  const out = k.unary(k.Unary.mulScalar, x, s);
  return record('mulScalar', [x], out, () => (g) => [k.unary(k.Unary.mulScalar, g, s)]);
}

/** x ** p for a scalar exponent. */
export function pow(x: Tensor, p: number): Tensor {
  checkFinite(p, 'pow');
  const out = k.unary(k.Unary.powScalar, x, p);
  return record('pow', [x], out, (node) => {
    const sx = node.save(x);
    return (g) => [k.binary(k.Binary.mul, g, k.unary(k.Unary.mulScalar, k.unary(k.Unary.powScalar, sx, p - 1), p), 'mul')];
  });
}

export function neg(x: Tensor): Tensor {
  const out = k.unary(k.Unary.neg, x);
  return record('neg', [x], out, () => (g) => [k.unary(k.Unary.neg, g)]);
}

export function exp(x: Tensor): Tensor {
  checkFloat(x, 'exp');
  const out = k.unary(k.Unary.exp, x);
  return record('exp', [x], out, (node) => {
    const so = node.save(out);
    return (g) => [k.binary(k.Binary.mul, g, so, 'mul')];
  });
}

export function log(x: Tensor): Tensor {
  checkFloat(x, 'log');
  const out = k.unary(k.Unary.log, x);
  return record('log', [x], out, (node) => {
    const sx = node.save(x);
    return (g) => [k.binary(k.Binary.div, g, sx, 'div')];
  });
}

export function sqrt(x: Tensor): Tensor {
  checkFloat(x, 'sqrt');
  const out = k.unary(k.Unary.sqrt, x);
  return record('sqrt', [x], out, (node) => {
    const so = node.save(out);
    return (g) => [k.unary(k.Unary.mulScalar, k.binary(k.Binary.div, g, so, 'div'), 0.5)];
  });
}

export function relu(x: Tensor): Tensor {
  checkFloat(x, 'relu');
  const out = k.unary(k.Unary.relu, x);
  return record('relu', [x], out, (node) => {
    const so = node.save(out);
    return (g) => [k.binary(k.Binary.reluBackward, g, so, 'relu')];
  });
}

/** GELU with the tanh approximation (GPT-2's). */
export function gelu(x: Tensor): Tensor {
  checkFloat(x, 'gelu');
  return recordGelu(x, k.unary(k.Unary.gelu, x));
}

/** Records `out` = gelu(x), computed elsewhere (a fused linear's epilogue): backward is one GELU-backward kernel from x. */
export function recordGelu(x: Tensor, out: Tensor, opts: { consumerMayApply?: boolean } = {}): Tensor {
  return record('gelu', [x], out, (node) => {
    const sx = node.save(x);
    // A consumer may do this backward in its own product (grad_through.ts).
    if (opts.consumerMayApply) node.activationGrad = { kind: 'gelu', input: sx };
    return (g) => [k.binary(k.Binary.geluBackward, g, sx, 'gelu')];
  });
}

export function tanh(x: Tensor): Tensor {
  checkFloat(x, 'tanh');
  const out = k.unary(k.Unary.tanh, x);
  return record('tanh', [x], out, (node) => {
    const so = node.save(out);
    return (g) => [k.binary(k.Binary.tanhBackward, g, so, 'tanh')];
  });
}

export function sigmoid(x: Tensor): Tensor {
  checkFloat(x, 'sigmoid');
  const out = k.unary(k.Unary.sigmoid, x);
  return record('sigmoid', [x], out, (node) => {
    const so = node.save(out);
    return (g) => [k.binary(k.Binary.sigmoidBackward, g, so, 'sigmoid')];
  });
}

/** Converts to `dtype` (a contiguous copy); the gradient is cast back. */
export function cast(x: Tensor, dtype: DType, opts: { track?: boolean } = {}): Tensor {
  checkDType(dtype, 'cast');
  const out = k.copy(x, dtype);
  if (opts.track === false) return out;
  return record('cast', [x], out, () => (g) => [k.copy(g, x.dtype)]);
}

/** A contiguous copy that stays on the tape. */
export function clone(x: Tensor): Tensor {
  return record('clone', [x], k.copy(x), () => (g) => [g]);
}

/** `x` when already contiguous, else a contiguous copy (on the tape). */
export function contiguous(x: Tensor): Tensor {
  if (x.isContiguous) return x;
  return record('contiguous', [x], k.copy(x), () => (g) => [g]);
}

function checkInPlace(t: Tensor, op: string): void {
  if (t.requiresGrad && isGradEnabled()) {
    throw new Error(`${op}: in-place update of a tensor that requires grad ${fmt(t.shape)}; wrap it in noGrad()`);
  }
  if (!t.isContiguous) throw new Error(`${op}: in-place updates need a contiguous tensor, got strides ${fmt(t.strides)}`);
}

/**
 * `t += alpha * x` in place (same shape); for optimizers and gradient accumulation.
 * @example
 * noGrad(() => addInPlace(w, w.grad!, -lr));
 */
export function addInPlace(t: Tensor, x: Tensor, alpha = 1): Tensor {
  checkInPlace(t, 'addInPlace');
  checkFinite(alpha, 'addInPlace');
  deviceOf('addInPlace', t, x);
  if (x.shape.length !== t.shape.length || x.shape.some((s, i) => s !== t.shape[i])) {
    throw new Error(`addInPlace: shapes ${fmt(t.shape)} and ${fmt(x.shape)} differ`);
  }
  k.axpyInto(t, x, alpha);
  return t;
}

/** Sets every element of `t` to `value` in place. */
export function fillInPlace(t: Tensor, value: number): Tensor {
  checkInPlace(t, 'fillInPlace');
  checkFinite(value, 'fillInPlace');
  return k.fill(t, value);
}

/** Copies `src` (same shape, any dtype or layout) into `t` in place. */
export function copyInPlace(t: Tensor, src: Tensor): Tensor {
  if (t.requiresGrad && isGradEnabled()) throw new Error(`copyInPlace: in-place update of a tensor that requires grad; wrap it in noGrad()`);
  if (src.shape.length !== t.shape.length || src.shape.some((s, i) => s !== t.shape[i])) {
    throw new Error(`copyInPlace: shapes ${fmt(t.shape)} and ${fmt(src.shape)} differ`);
  }
  k.copyInto(src, t);
  return t;
}
