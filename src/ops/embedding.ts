/**
 * Embedding lookup on a native gather kernel; its backward is a deterministic scatter-add
 * (native/cpu/embedding.cc). On CUDA the ids never go to the host: the gather flags bad ids on
 * the device (reported at the next synchronization, tensor/device_checks.ts) and the backward
 * groups positions by id with a device sort (native/cuda/embedding_sort.cu). Where the addon
 * takes it, the weight gradient is added straight into the weight's `.grad` (grad_into.ts).
 */

import { GRAD_WRITTEN, type GradInto, overlapsAny } from '../autograd/grad_into.ts';
import { deviceOf, kernelsOn, kernelsSay } from '../tensor/backend.ts';
import { deferIndexCheck } from '../tensor/device_checks.ts';
import { dtypeCode } from '../tensor/dtype.ts';
import { fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { record } from './autograd_support.ts';
import * as k from './kernels.ts';
import { checkFloatArg, checkIndexArg, position } from './nn_util.ts';

export interface EmbeddingOpOptions {
  /**
   * Only rows [0, rows) may be looked up (default all): ids >= rows are out of range and the
   * other rows' gradient is zero. A padded vocabulary's table (models/gpt_vocab.ts).
   */
  rows?: number;
}

/**
 * Rows of `weight` [V, D] picked by integer `ids` (i32 or i64, any shape): [...ids.shape, D].
 * The gradient flows into weight only; rows picked several times sum their gradients.
 * @example
 * const x = embedding(tokens, wte);   // tokens [batch, seq] -> [batch, seq, hidden]
 */
export function embedding(ids: Tensor, weight: Tensor, opts: EmbeddingOpOptions = {}): Tensor {
  checkIndexArg(ids, 'embedding', 'ids');
  checkFloatArg(weight, 'embedding', 'weight');
  const dev = deviceOf('embedding', ids, weight);
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be [V, D], got ${fmt(weight.shape)}`);
  const D = weight.shape[1];
  const V = opts.rows ?? weight.shape[0];
  if (!Number.isSafeInteger(V) || V < 0 || V > weight.shape[0]) throw new Error(`embedding: rows must be an integer in [0, ${weight.shape[0]}] (weight ${fmt(weight.shape)}), got ${opts.rows}`);
  const code = dtypeCode(weight.dtype);
  const idCode = dtypeCode(ids.dtype);
  const n = ids.numel;
  const ic = k.asContiguous(ids);
  const wc = k.asContiguous(weight);
  const out = k.empty([...ids.shape, D], weight.dtype, undefined, false, dev);
  if (dev !== 'cpu') return embeddingOnDevice(ids, ic, wc, weight, out, V);
  const bad = kernelsOn(dev).embeddingForward(code, idCode, ic.id, ic.offset, n, wc.id, wc.offset, V, D, out.id, 0) as number;
  if (wc !== weight) wc.dispose();
  if (bad >= 0) {
    const value = ic.toList()[bad];
    if (ic !== ids) ic.dispose();
    out.dispose();
    throw new Error(`embedding: id ${value} at position ${position(bad, ids.shape)} of ids ${fmt(ids.shape)} is out of range for V = ${V} rows (weight ${fmt(weight.shape)})`);
  }
  const result = record('embedding', [weight], out, (node) => {
    const si = node.save(ic);
    node.writesGradInto = kernelsSay(dev, 'embeddingGradInto');
    return (g, into) => scatterBack(g, into[0], si, weight, V, (gc, dw, add) =>
      kernelsOn(dev).embeddingBackward(code, idCode, si.id, si.offset, n, gc.id, gc.offset, dw.id, V, D, ...extra(dw, add)),
    );
  });
  if (ic !== ids) ic.dispose();
  return result;
}

/** The trailing (dwOff, add) arguments, only where they say something (older addons take none). */
function extra(dw: Tensor, add: boolean): (number | boolean)[] {
  return add || dw.offset !== 0 ? [dw.offset, add] : [];
}

/**
 * The weight gradient: summed by `scatter` (over rows [0, V)) into a fresh tensor of the weight's
 * shape, whose rows from V on are zeroed, or added into the weight's `.grad` where the engine
 * offers it (GRAD_WRITTEN returned; rows from V on untouched).
 */
function scatterBack(
  g: Tensor, into: GradInto | null, ids: Tensor, weight: Tensor, V: number, scatter: (gc: Tensor, dw: Tensor, add: boolean) => void,
): (Tensor | typeof GRAD_WRITTEN)[] {
  const gc = g.dtype === weight.dtype ? k.asContiguous(g) : k.copy(g, weight.dtype);
  const dest = into && !into.shared && !overlapsAny(into.grad, [gc, ids]) ? into.grad : null;
  const dw = dest ?? k.empty(weight.shape, weight.dtype, undefined, false, weight.device);
  if (!dest && V < weight.shape[0]) {
    const [rows, D] = weight.shape;
    const rest = dw.alias([rows - V, D], [D, 1], V * D);
    k.fill(rest, 0);
    rest.dispose();
  }
  scatter(gc, dw, dest !== null);
  if (gc !== g) gc.dispose();
  return [dest ? GRAD_WRITTEN : dw];
}

function outOfRange(idsShape: readonly number[], wShape: readonly number[], V: number, dev: string, pos: number, value: number): string {
  return `embedding: id ${value} at position ${position(pos, idsShape)} of ids ${fmt(idsShape)} is out of range for V = ${V} rows (weight ${fmt(wShape)}; checked on ${dev}, reported at the next synchronization)`;
}

/** The CUDA path: gather with a device-side range check, backward by a device sort. */
function embeddingOnDevice(ids: Tensor, ic: Tensor, wc: Tensor, weight: Tensor, out: Tensor, V: number): Tensor {
  const dev = weight.device;
  const D = weight.shape[1];
  const code = dtypeCode(weight.dtype);
  const idCode = dtypeCode(ids.dtype);
  const n = ids.numel;
  const flag = k.empty([1], 'i64', 'other', false, dev);
  const kern = kernelsOn(dev);
  kern.embeddingGather(code, idCode, ic.id, ic.offset, n, wc.id, wc.offset, V, D, out.id, 0, flag.id);
  if (wc !== weight) wc.dispose();
  const idsShape = [...ids.shape];
  const wShape = [...weight.shape];
  deferIndexCheck(flag, ic.alias(), (pos, value) => outOfRange(idsShape, wShape, V, dev, pos, value));
  const result = record('embedding', [weight], out, (node) => {
    const si = node.save(ic);
    node.writesGradInto = kernelsSay(dev, 'embeddingGradInto');
    return (g, into) => scatterBack(g, into[0], si, weight, V, (gc, dw, add) =>
      kern.embeddingScatter(code, idCode, si.id, si.offset, n, gc.id, gc.offset, dw.id, V, D, ...extra(dw, add)),
    );
  });
  if (ic !== ids) ic.dispose();
  return result;
}
