/**
 * The one device a data-parallel engine's parameters live on: its buffers, gradients and
 * optimizer state are allocated there. Parameters spread over devices are refused (move the
 * model first: nn.moduleToDevice, or initialize()'s `device`).
 */
import type { Device } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';

/**
 * @example
 * const device = paramDevice(model.namedParameters(), 'ZeroStage12');   // 'cuda:0'
 */
export function paramDevice(named: readonly [string, Tensor][], where: string): Device {
  const device = named[0][1].device;
  const away = named.find(([, p]) => p.device !== device);
  if (away) {
    throw new Error(`${where}: parameter "${away[0]}" is on ${away[1].device} but "${named[0][0]}" is on ${device}; move the model to one device (nn.moduleToDevice or initialize's device)`);
  }
  return device;
}
