/**
 * Whether a CUDA graph is being captured (cuda_graph.ts), for the code that must behave
 * differently then: what runs on the host during a capture runs once and is never replayed, so
 * CPU kernels and random counters are refused, and gradients are added into unless the capture
 * itself zeroed them (a zero-mark made before it says nothing about the state at a replay).
 */
import type { Device } from './storage.ts';

let capturing: Device | null = null;
let serial = 0;

/**
 * Host work a replay must redo before its graph runs (random ops' generator state, an optimizer
 * step's scalars, an lr schedule's step, the engine's step bookkeeping): checks that a replay can
 * run (throwing, it stops the replay before anything is written), then returns the work to do. That
 * work may return a function to run once the graph's launch is queued (work queued after it, such
 * as reading back what the replay decided).
 */
// biome-ignore lint/suspicious/noConfusingVoidType: most prologues' work returns nothing (void); some return what runs after the launch
export type ReplayPrologue = () => () => void | (() => void);

let prologues: ReplayPrologue[] = [];

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

/**
 * During a capture: each replay of the graph first calls `prepare` (every prologue's, in the order
 * registered), then the work they return (queued on the compute stream, so it precedes the
 * graph's). A failed capture drops it. What the work writes must be memory outside the graph's
 * pool: the pool's blocks are reused by the graph's own nodes, which would overwrite it.
 */
export function onEachReplay(prepare: ReplayPrologue): void {
  if (capturing === null) throw new Error('onEachReplay: no CUDA graph is being captured');
  prologues.push(prepare);
}

/** Internal (cuda_graph.ts): the prologues registered since the last call (at a capture's start, none). */
export function takeReplayPrologues(): ReplayPrologue[] {
  const taken = prologues;
  prologues = [];
  return taken;
}

/** Throws naming `what` while a graph is being captured: work that a replay would not redo. */
export function refuseInCapture(what: string, why: string): void {
  if (capturing === null) return;
  throw new Error(`${what} inside captureCudaGraph (capturing ${capturing}): ${why}`);
}
