/**
 * Whether a CUDA graph is being captured (cuda_graph.ts), for the code that must behave
 * differently then: what runs on the host during a capture runs once and is never replayed, so
 * CPU kernels and random counters are refused, and gradients are always added into (never
 * overwritten because they are known to be zero: a replay must not depend on that).
 */
import type { Device } from './storage.ts';

let capturing: Device | null = null;

/** The device a CUDA graph is being captured on, or null. */
export function graphCaptureDevice(): Device | null {
  return capturing;
}

/** Internal (cuda_graph.ts): marks the start (a device) and end (null) of a capture. */
export function setGraphCaptureDevice(device: Device | null): void {
  capturing = device;
}

/** Throws naming `what` while a graph is being captured: work that a replay would not redo. */
export function refuseInCapture(what: string, why: string): void {
  if (capturing === null) return;
  throw new Error(`${what} inside captureCudaGraph (capturing ${capturing}): ${why}`);
}
