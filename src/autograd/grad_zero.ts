/**
 * Which `.grad` tensors are known to hold zeros, so that a backward may write a parameter's
 * gradient with an operation that overwrites (cuBLASLt's bias-gradient epilogue) instead of
 * adding into it. Reading the memory to find out would cost a device synchronization.
 *
 * A mark is set by a zero-grad path right after it filled the tensor with zeros, and dropped at
 * the first gradient backward writes into it or adds to it, and for every tensor at the end of
 * the next top-level backward pass: so with gradient accumulation only the first micro-batch
 * after a zero-grad overwrites, and writes made between two passes (an all-reduce, clipping, a
 * deferred weight-gradient job) never meet a stale mark.
 */
import { graphCaptureSerial } from '../tensor/capture_state.ts';
import type { Storage } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';

interface Mark {
  epoch: number;
  /** The CUDA graph capture the mark was made in (0: none). */
  capture: number;
  storage: Storage;
  offset: number;
}

let epoch = 0;
const marks = new WeakMap<Tensor, Mark>();

/**
 * Says that `grad` holds zeros now. Call it right after filling it, only where nothing but
 * backward writes into it before the next backward pass (the engine's and optimizers' zero-grad).
 * @example
 * k.fill(p.grad, 0);
 * markGradZero(p.grad);
 */
export function markGradZero(grad: Tensor): void {
  if (grad.disposed) return;
  marks.set(grad, { epoch, capture: graphCaptureSerial(), storage: grad.storage, offset: grad.offset });
}

/** True while `grad` is known to hold zeros: marked in this epoch, not written since, same memory. */
export function isGradZero(grad: Tensor): boolean {
  const m = marks.get(grad);
  // In a capture, only the capture's own zeroing counts: replays repeat it. A mark from before
  // says nothing about the gradient at a replay, so the captured backward adds.
  return m !== undefined && m.capture === graphCaptureSerial() && m.epoch === epoch && !grad.disposed && m.storage === grad.storage && m.offset === grad.offset;
}

/** `grad` was written (backward added to it or wrote it): no longer known to be zero. */
export function clearGradZero(grad: Tensor): void {
  marks.delete(grad);
}

/** Drops every mark (the engine, at the end of each top-level backward pass). */
export function endGradZeroEpoch(): void {
  epoch++;
}
