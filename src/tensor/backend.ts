/**
 * Which native kernels run an op: the CPU ones for CPU tensors, the addon's `cuda` object (same
 * function names and arguments) for 'cuda:N' tensors. An op that has no CUDA kernel yet throws
 * an error naming it, instead of handing device memory to a CPU loop.
 */
import { type Native, native } from '../native.ts';
import { graphCaptureDevice, refuseInCapture } from './capture_state.ts';
import { fmt } from './shape.ts';
import type { Device } from './storage.ts';

interface Placed {
  readonly device: Device;
  readonly shape: readonly number[];
  readonly dtype: string;
}

/** A kernel the CUDA table lacks: calling it throws naming the op (one function per name, made once). */
const missing = new Map<string, () => never>();
function missingKernel(name: string, built: boolean): () => never {
  let f = missing.get(name);
  if (f === undefined) {
    f = () => {
      throw new Error(
        built
          ? `${name}: no CUDA kernel yet for this op; move its inputs to the CPU with .to('cpu')`
          : `${name}: this addon was built without CUDA (nvcc was not found at build time)`,
      );
    };
    missing.set(name, f);
  }
  return f;
}

/** `native.cuda[name]` as it is now (tests swap kernels), or the stand-in that throws naming it. */
function cudaKernel(name: string): unknown {
  const table = native.cuda as Record<string, unknown> | undefined;
  const f = table?.[name];
  return typeof f === 'function' ? f : missingKernel(name, table !== undefined);
}

/**
 * The CUDA kernel table, or a stand-in whose every function throws naming the op. Every name the
 * addon exports is an accessor of its own (a Proxy's trap on each kernel call cost ~45 ns); other
 * names reach the Proxy below it. Both read native.cuda at each access, as before.
 */
const cudaKernels: Native = Object.create(
  new Proxy(
    {},
    {
      get: (_, name) => (typeof name === 'string' ? cudaKernel(name) : undefined),
    },
  ),
);
for (const name of Object.keys(native.cuda ?? {})) {
  Object.defineProperty(cudaKernels, name, { get: () => cudaKernel(name) });
}

/** True for 'cuda:N' devices. */
export function isCuda(device: Device): boolean {
  return device !== 'cpu';
}

/**
 * The device every tensor operand of `op` is on; throws naming the op, shapes and devices when
 * they differ (there is no implicit copy between devices).
 */
export function deviceOf(op: string, ...tensors: (Placed | null | undefined)[]): Device {
  let dev: Device | null = null;
  let first: Placed | null = null;
  for (const t of tensors) {
    if (!t) continue;
    if (dev === null) {
      dev = t.device;
      first = t;
    } else if (t.device !== dev && first) {
      throw new Error(
        `${op}: operands on different devices (${first.dtype} ${fmt(first.shape)} on ${dev}, ${t.dtype} ${fmt(t.shape)} on ${t.device}); move one with .to()`,
      );
    }
  }
  return dev ?? 'cpu';
}

/** During a CUDA graph's capture: CPU kernels would run once, at capture, and never at replay. */
const cpuRefused: Native = new Proxy({} as Native, {
  get(_, name: string) {
    return () =>
      refuseInCapture(
        `CPU kernel ${name}`,
        'a graph replays device work only; move this work out of the captured function or onto the device',
      );
  },
});

/** The kernel table for tensors on `device`. */
export function kernelsOn(device: Device): Native {
  if (device !== 'cpu') return cudaKernels;
  return graphCaptureDevice() === null ? native : cpuRefused;
}

/** True when the kernel table for `device` says `flag` (a capability the addon sets to true, e.g. layerNormGradInto). */
export function kernelsSay(device: Device, flag: string): boolean {
  const table = (device === 'cpu' ? native : native.cuda) as Record<string, unknown> | undefined;
  return table?.[flag] === true;
}

/** Throws naming `op` when any operand is on a CUDA device: for ops whose CUDA kernel is not written yet. */
export function cpuOnly(op: string, ...tensors: (Placed | null | undefined)[]): void {
  for (const t of tensors) {
    if (t && t.device !== 'cpu') {
      throw new Error(`${op}: no CUDA kernel yet (input ${t.dtype} ${fmt(t.shape)} is on ${t.device}); move it to the CPU with .to('cpu')`);
    }
  }
}

/**
 * The kernel table for raw storage ids (the fused optimizer ranges, ZeRO's flat buffers), by the
 * storage's device as the addon records it.
 */
export function storageKernels(id: number): Native {
  // An addon built before CUDA storages existed has no storageIsCuda: everything is on the CPU.
  return native.cuda && native.storageIsCuda(id) ? cudaKernels : native;
}
