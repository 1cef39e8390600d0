/** Moving a module's parameters and buffers to another device, keeping the tensor objects. */
import { noGrad } from '../autograd/grad_mode.ts';
import { checkDevice } from '../tensor/device.ts';
import type { Device } from '../tensor/storage.ts';
import { withTag } from '../tensor/tag_context.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { Module } from './module.ts';

/**
 * Copies every parameter and buffer of `module` (recursively) to `device` and re-points the
 * tensors at the copies (Tensor.rebind): the objects stay, so optimizers, hooks and tied
 * weights made before see the moved values. Gradients are dropped. Returns the module.
 * @example
 * const model = moduleToDevice(new GPT(gptConfig('tiny')), 'cuda:0');
 * const optimizer = new AdamW(model.parameters());   // state on cuda:0
 */
export function moduleToDevice<M extends Module>(module: M, device: Device): M {
  const dev = checkDevice(device, 'moduleToDevice');
  const seen = new Set<Tensor>();
  const tensors = [...module.parameters(), ...module.buffers()];
  noGrad(() => {
    for (const t of tensors) {
      if (seen.has(t)) continue;  // a tied weight is moved once
      seen.add(t);
      if (t.grad) {
        t.grad.dispose();
        t.grad = null;
      }
      if (t.device === dev) continue;
      // The copy keeps the tensor's memory tag ('param' for parameters), not the ambient one.
      const moved = withTag(t.storage.tag, () => t.to(dev));
      moved.storage.retain();
      t.rebind(moved.storage, moved.offset);
      moved.dispose();
    }
  });
  return module;
}
