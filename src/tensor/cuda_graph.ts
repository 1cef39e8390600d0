/**
 * CUDA graphs: capture the device work of a function once, then replay it with one host call.
 * A training step issues about 1050 device ops (ResNet-101) at some 20 µs of host time each;
 * replayed, the step costs one `cudaGraphLaunch`. The addon records the device's compute stream
 * (native/cuda/cuda_graph.cc); the memory the capture allocates comes from a pool that only the
 * graph uses, so its replays never overwrite a tensor allocated after it.
 *
 * What a replay does: exactly the device work the capture queued, on the same memory. So:
 * - inputs are static: copy each new batch into the tensors the function read (`copyInPlace`);
 *   the tensors it read must stay alive, in place;
 * - outputs are static: `graph.output` holds the latest replay's values;
 * - gradients as captured: a parameter without `.grad` gets one from the capture, which each
 *   replay overwrites (set them to none before capturing and never zero them: the fewest nodes);
 *   an existing `.grad` is added into, unless the capture itself zeroed it, so zero in place
 *   between steps (gradient accumulation: several replays per step). `parameters` makes each
 *   replay check that they are still the tensors it writes;
 * - nothing on the host is repeated: CPU kernels and host-drawn random numbers (CPU tensors,
 *   normal samples) are refused during the capture, and so is anything that makes the host wait
 *   for the device (reading a value, a host copy); dropout and rand on the device draw fresh
 *   numbers at each replay, those eager steps would (graph_rng.ts);
 *   embedding and cross-entropy index checks are re-armed by each replay;
 * - an optimizer step (`opt.step()` of SGD, Adam, AdamW) may be captured too: each replay first
 *   writes the step's scalars from the optimizer's current host state (step count, lr, weight decay)
 *   into device memory the captured update reads, and advances the host state as an eager step would.
 * Run the function once eagerly first (PyTorch's warm-up): first-use work such as cuDNN plans
 * and gradients' first allocation then happens outside the capture.
 */

import { native } from '../native.ts';
import { graphCaptureDevice, type ReplayPrologue, refuseInCapture, setGraphCaptureDevice, takeReplayPrologues } from './capture_state.ts';
import { checkDevice } from './device.ts';
import { deferCheckAgain, flushDeviceChecks, type PendingCheck, takePendingChecks } from './device_checks.ts';
import { abortGraphRng, beginGraphRng, endGraphRng, rngReplayPrologue } from './graph_rng.ts';
import type { Device } from './storage.ts';
import type { Tensor } from './tensor.ts';

/** Options of captureCudaGraph. */
export interface CudaGraphOptions {
  /** The device whose compute stream is captured (default 'cuda:0'). */
  device?: Device;
  /** Parameters whose `.grad` the captured backward writes: each replay checks that they are still the tensors it writes into. */
  parameters?: Iterable<Tensor>;
}

/** A captured graph: `replay()` queues its device work again; `output` is what the function returned. */
export class CudaGraph<T> {
  /** Nodes in the graph (kernels, library calls' kernels, copies): host calls that one replay saves. */
  readonly nodes: number;
  private id: number | null;

  /** Internal: made by captureCudaGraph. */
  constructor(
    readonly device: Device,
    /** The function's return value at capture; its tensors hold the latest replay's values. */
    readonly output: T,
    id: number,
    nodes: number,
    private readonly checks: PendingCheck[],
    private readonly grads: [Tensor, Tensor | null][],
    /** Generator counters one replay consumes (its dropout and rand ops, graph_rng.ts). */
    readonly randomCounters = 0,
    private readonly prologues: ReplayPrologue[] = [],
  ) {
    this.id = id;
    this.nodes = nodes;
  }

  /** Queues the captured work on the device (no wait); returns `output`. */
  replay(): T {
    if (this.id === null) throw new Error('CudaGraph.replay: the graph was disposed');
    this.grads.forEach(([p, g], i) => {
      if (p.grad !== g || g?.disposed) {
        throw new Error(
          `CudaGraph.replay: parameter #${i} ${p}'s .grad is ${p.grad === null ? 'null' : 'another tensor'} since the capture, but the graph writes the gradient into the tensor it had then; zero gradients in place (zeroGrad({ setToNone: false })) or capture again`,
        );
      }
    });
    if (this.prologues.length > 0) refuseInCapture('CudaGraph.replay', 'the host work before its launch would be captured once, not rerun');
    // Every prologue checks before any writes (the random ops' generator state, an optimizer step's
    // scalars: capture_state.ts), then the graph runs after their writes.
    const writes = this.prologues.map((prepare) => prepare());
    const after: (() => void)[] = [];
    for (const w of writes) {
      const a = w();
      if (a) after.push(a);
    }
    native.cudaGraphReplay(this.id);
    for (const c of this.checks) deferCheckAgain(c);
    for (const a of after) a();
    return this.output;
  }

  /** Destroys the graph; its memory returns to the caching allocator (after queued replays). Idempotent. */
  dispose(): void {
    if (this.id === null) return;
    native.cudaGraphRelease(this.id);
    this.id = null;
    for (const c of this.checks) {
      c.flag.dispose();
      c.ids.dispose();
    }
    this.checks.length = 0;
    this.prologues.length = 0;
  }
}

/**
 * Captures the device work `fn` queues on `device` into a CUDA graph (nothing runs during the
 * capture: `output`'s values come from the first replay).
 * @example
 * const x = randn([32, 784], { device: 'cuda:0' }), y = zeros([32], { dtype: 'i64', device: 'cuda:0' });
 * const trainStep = () => { const l = crossEntropy(model.forward(x), y); l.backward(); opt.step(); return l; };
 * trainStep().dispose(); opt.zeroGrad(); // warm-up, eagerly (creates the optimizer's state); no gradients at the capture
 * const g = captureCudaGraph(trainStep, { parameters: model.parameters() });
 * for (const [bx, by] of batches) { copyInPlace(x, bx); copyInPlace(y, by); g.replay(); sched.step(); }
 */
export function captureCudaGraph<T>(fn: () => T, options: CudaGraphOptions = {}): CudaGraph<T> {
  const device = checkDevice(options.device ?? 'cuda:0', 'captureCudaGraph');
  if (device === 'cpu') throw new Error("captureCudaGraph: CUDA graphs capture a CUDA device's work, got device 'cpu'");
  if (typeof native.cudaGraphBegin !== 'function') throw new Error('captureCudaGraph: this addon was built without CUDA');
  const outer = graphCaptureDevice();
  if (outer !== null) throw new Error(`captureCudaGraph: a graph is already being captured on ${outer}; captures do not nest`);
  const parameters = [...(options.parameters ?? [])];
  // Pending checks read now: the capture cannot wait for the device.
  flushDeviceChecks();
  beginGraphRng(device); // before the capture: the device's generator base is no block of the graph's pool
  let id: number;
  try {
    id = native.cudaGraphBegin(Number(device.slice(5)));
  } catch (e) {
    abortGraphRng();
    throw e;
  }
  setGraphCaptureDevice(device);
  let output: T;
  let nodes: number;
  let counters: number;
  try {
    output = fn();
    setGraphCaptureDevice(null);
    counters = endGraphRng();
    nodes = native.cudaGraphEnd(id);
  } catch (e) {
    setGraphCaptureDevice(null);
    abortGraphRng();
    takeReplayPrologues();
    native.cudaGraphAbort(id);
    for (const c of takePendingChecks()) {
      c.flag.dispose();
      c.ids.dispose();
    }
    throw new Error(`captureCudaGraph: the capture failed, nothing was kept: ${(e as Error).message}`, { cause: e });
  }
  const grads = parameters.filter((p) => p.requiresGrad).map((p): [Tensor, Tensor | null] => [p, p.grad]);
  const prologues = takeReplayPrologues();
  if (counters > 0) prologues.push(rngReplayPrologue(device, counters));
  return new CudaGraph(device, output, id, nodes, takePendingChecks(), grads, counters, prologues);
}
