/**
 * Whether a CUDA graph is being captured (cuda_graph.ts), for the code that must behave
 * differently then: what runs on the host during a capture runs once and is never replayed, so
 * CPU kernels and random counters are refused, and gradients are added into unless the capture
 * itself zeroed them (a zero-mark made before it says nothing about the state at a replay).
 */
import type { Device } from './storage.ts';

let capturing: Device | null = null;
let serial = 0;

/** The device a CUDA graph is being captured on, or null. */
export function graphCaptureDevice(): Device | null {
  return capturing;
}

/** Which capture is running: a number new for each capture, 0 when none. */
export function graphCaptureSerial(): number {
  return capturing === null ? 0 : serial;
}

/** Internal (cuda_graph.ts): marks the start (a device) and end (null) of a capture. */
export function setGraphCaptureDevice(device: Device | null): void {
  capturing = device;
  if (device !== null) serial++;
}

/** Throws naming `what` while a graph is being captured: work that a replay would not redo. */
export function refuseInCapture(what: string, why: string): void {
  if (capturing === null) return;
  throw new Error(`${what} inside captureCudaGraph (capturing ${capturing}): ${why}`);
}
