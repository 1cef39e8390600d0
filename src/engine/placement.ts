/**
 * Where initialize() puts the model (DeepSpeed moves the model to the rank's local device): an
 * explicit `device` option, else MESHTRAIN_DEVICE, else 'cuda:(LOCAL_RANK % device count)' when
 * this addon has CUDA and the driver shows devices, else 'cpu'. Several ranks may share one GPU
 * (LOCAL_RANK beyond the count wraps around), which is what a one-GPU machine runs.
 */
import { native } from '../native.ts';
import { checkDevice, cudaDeviceCount } from '../tensor/device.ts';
import type { Device } from '../tensor/storage.ts';

/**
 * The engine's device for this rank.
 * @example
 * engineDevice(undefined, { LOCAL_RANK: '3' })   // 'cuda:1' on a machine with 2 GPUs, 'cpu' without
 */
export function engineDevice(option: unknown, env: NodeJS.ProcessEnv = process.env): Device {
  const count = native.cuda ? cudaDeviceCount() : 0;
  const pick = (value: unknown, where: string): Device => {
    const d = checkDevice(value, where);
    if (d !== 'cpu' && Number(d.slice(5)) >= count) {
      throw new Error(`${where}: ${d} is not available (${count} CUDA device(s)${native.cuda ? '' : '; this addon was built without CUDA'})`);
    }
    return d;
  };
  if (option !== undefined) return pick(option, 'initialize: device');
  if (env.MESHTRAIN_DEVICE) return pick(env.MESHTRAIN_DEVICE, 'MESHTRAIN_DEVICE');
  if (count === 0) return 'cpu';
  const local = Number(env.LOCAL_RANK ?? 0);
  return `cuda:${(Number.isInteger(local) && local >= 0 ? local : 0) % count}`;
}
