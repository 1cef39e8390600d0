/**
 * What a ZeRO-3 parameter points at while it is partitioned: a storage with no memory whose id
 * throws. The parameter keeps its full shape (modules, optimizers and autograd edges see the
 * same tensor), but every kernel reaches its data through `tensor.id`, so any op, copy or read
 * of a released parameter fails with an error naming it instead of reading garbage.
 */
import { type Device, Storage } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';

/** A placeholder storage: never allocated, never freed; reading its id throws `message`. */
export class ReleasedStorage extends Storage {
  /** `device`: where the parameter is when gathered (its `device` stays truthful while released). */
  constructor(message: string, device: Device = 'cpu') {
    // -1: no native allocation. The size only has to pass rebind's bounds check.
    super(Number.MAX_SAFE_INTEGER, 'param', device, false, -1);
    Object.defineProperty(this, 'id', {
      get(): number {
        throw new Error(message);
      },
    });
  }

  override retain(): void {}

  override release(): void {}

  override get alive(): boolean {
    return true;
  }
}

/** Whether `p` is currently released (points at a placeholder). */
export function isReleased(p: Tensor): boolean {
  return !p.disposed && p.storage instanceof ReleasedStorage;
}

/** The error text for a released parameter, naming it and the modules that gather it. */
export function releasedMessage(name: string, shape: readonly number[], modules: string[]): string {
  const where = modules.length ? `the forward and backward of ${modules.map((m) => `"${m || '(root)'}"`).join(', ')}` : 'no module (it is never gathered)';
  return (
    `ZeRO stage 3: parameter "${name}" [${shape.join(', ')}] is partitioned over the data-parallel ranks and not gathered here; ` +
    `it holds its values only during ${where}. Read it inside zero.gathered(() => ...), or, if a module's forward uses it ` +
    'outside its own module, call zero.registerExternalParameter(module, param)'
  );
}
