/**
 * The optimizer step of an offloaded partition whose parameters live on a GPU (DeepSpeed's CPU
 * Adam): the master and the state are in host memory (the offload pool or an NVMe sub-group
 * buffer), so each piece's gradients and parameters are copied into pinned host buffers
 * (tagged 'comm', like every host<->device staging buffer), the CPU kernel updates them, and the
 * parameters are copied back. The CPU kernel on the device's bytes: the update equals the CPU
 * run's bit for bit.
 */
import { native } from '../../native.ts';
import type { FlatRef } from '../../optim/fused.ts';
import { itemSize } from '../../tensor/dtype.ts';
import { pinnedEmpty, stageBytes } from '../../tensor/pinned.ts';

/** Whether storage `id` is device memory. */
export function onDevice(id: number): boolean {
  return Boolean(native.cuda) && native.storageIsCuda(id);
}

/**
 * Runs `update(param, grad)` over `n` elements with host addresses: as given when both are on the
 * host, else through pinned copies (the parameters written back to the device afterwards).
 * @example
 * onHost(paramRef, gradRef, n, (p, g) => adamStep(p, g, 'f32', m, v, master, n, h, step));
 */
export function onHost(param: FlatRef, grad: FlatRef, n: number, update: (param: FlatRef, grad: FlatRef) => void): void {
  const pDev = onDevice(param.id);
  const gDev = onDevice(grad.id);
  if (!pDev && !gDev) {
    update(param, grad);
    return;
  }
  const hostOf = (ref: FlatRef, dev: boolean) => (dev ? pinnedEmpty([n], { dtype: ref.dtype, tag: 'comm' }) : null);
  const hp = hostOf(param, pDev);
  const hg = hostOf(grad, gDev);
  try {
    const pBytes = n * itemSize(param.dtype);
    const gBytes = n * itemSize(grad.dtype);
    if (hp) stageBytes(param.id, param.off * itemSize(param.dtype), hp.id, 0, pBytes);
    if (hg) stageBytes(grad.id, grad.off * itemSize(grad.dtype), hg.id, 0, gBytes);
    update(hp ? { dtype: param.dtype, id: hp.id, off: 0 } : param, hg ? { dtype: grad.dtype, id: hg.id, off: 0 } : grad);
    if (hp) stageBytes(hp.id, 0, param.id, param.off * itemSize(param.dtype), pBytes);
  } finally {
    hp?.dispose();
    hg?.dispose();
  }
}
