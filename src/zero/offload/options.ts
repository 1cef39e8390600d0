/**
 * Where ZeRO keeps a partition's optimizer state (DeepSpeed's zero_optimization.offload_optimizer
 * and sub_group_size, in camelCase): `none` in ordinary memory, `cpu` in host memory accounted as
 * the offload pool, `nvme` in files under `nvmePath`, streamed through a few sub-group buffers.
 */
import { checkBool, checkKeys, checkRange } from '../../optim/checks.ts';

/** The offload_optimizer section, camelCased; see docs/config.md for DeepSpeed's keys. */
export interface OffloadOptions {
  device: 'none' | 'cpu' | 'nvme';
  /** nvme: the directory the state files go in (required). */
  nvmePath?: string | null;
  /** nvme: sub-group buffers in RAM during a step (default 4; at least 2; 3 overlap reads and writes with the update). */
  bufferCount?: number;
  /** Page-locked host memory: a GPU transfer concern, accepted and ignored on CPU runs. */
  pinMemory?: boolean;
}

/** DeepSpeed's sub_group_size default (zero/config.py): elements per optimizer sub-group step. */
export const DEFAULT_SUB_GROUP_SIZE = 1e9;

export interface ResolvedOffload {
  device: 'none' | 'cpu' | 'nvme';
  nvmePath: string | null;
  bufferCount: number;
  pinMemory: boolean;
  subGroupSize: number;
}

/** Checks the options and fills in defaults (`where` names the caller in errors). */
export function resolveOffload(opts: OffloadOptions | undefined, subGroupSize: number | undefined, where: string): ResolvedOffload {
  const sub = subGroupSize ?? DEFAULT_SUB_GROUP_SIZE;
  checkRange(sub, 'subGroupSize', where, 1);
  if (!Number.isInteger(sub)) throw new Error(`${where}: subGroupSize must be an integer, got ${sub}`);
  if (opts === undefined) return { device: 'none', nvmePath: null, bufferCount: 4, pinMemory: false, subGroupSize: sub };
  const at = `${where}: offloadOptimizer`;
  if (typeof opts !== 'object' || opts === null) throw new Error(`${at} must be an object { device: 'none' | 'cpu' | 'nvme', ... }`);
  checkKeys(opts, ['device', 'nvmePath', 'bufferCount', 'pinMemory'], at);
  if (!['none', 'cpu', 'nvme'].includes(opts.device)) throw new Error(`${at}.device must be 'none', 'cpu' or 'nvme', got ${JSON.stringify(opts.device)}`);
  const bufferCount = opts.bufferCount ?? 4;
  checkRange(bufferCount, 'bufferCount', at, 2);
  if (!Number.isInteger(bufferCount)) throw new Error(`${at}.bufferCount must be an integer, got ${bufferCount}`);
  const pinMemory = opts.pinMemory ?? false;
  checkBool(pinMemory, 'pinMemory', at);
  const nvmePath = opts.nvmePath ?? null;
  if (opts.device === 'nvme' && (typeof nvmePath !== 'string' || nvmePath === '')) {
    throw new Error(`${at}.nvmePath: a directory is required with device 'nvme', got ${JSON.stringify(nvmePath)}`);
  }
  return { device: opts.device, nvmePath, bufferCount, pinMemory, subGroupSize: sub };
}
