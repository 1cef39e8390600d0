/**
 * Where ZeRO stage 3 keeps a rank's parameter partition (DeepSpeed's zero_optimization.offload_param,
 * in camelCase): `none` in the shared arena as usual, `cpu` in host memory accounted as the offload
 * pool, `nvme` in files under `nvmePath`, read through `bufferCount` swap buffers of `bufferSize`
 * elements (the first `maxInCpu` elements of the partition stay in host memory, as DeepSpeed's
 * params_in_nvme_and_cpu).
 */
import { checkBool, checkKeys, checkRange } from '../../optim/checks.ts';

/** The offload_param section, camelCased; see docs/config.md for DeepSpeed's keys. */
export interface OffloadParamOptions {
  device: 'none' | 'cpu' | 'nvme';
  /** nvme: the directory the parameter files go in (required). */
  nvmePath?: string | null;
  /** nvme: swap buffers in host memory (default 5, DeepSpeed's). */
  bufferCount?: number;
  /** nvme: elements per swap buffer (default 1e8); must hold the largest shard of a parameter. */
  bufferSize?: number;
  /** nvme: the first this many elements of the rank's partition stay in host memory (default 1e9, DeepSpeed's). */
  maxInCpu?: number;
  /** Page-locked host memory: a GPU transfer concern, accepted and ignored on CPU runs. */
  pinMemory?: boolean;
}

export interface ResolvedParamOffload {
  device: 'none' | 'cpu' | 'nvme';
  nvmePath: string | null;
  bufferCount: number;
  bufferSize: number;
  maxInCpu: number;
  pinMemory: boolean;
}

/**
 * Checks the options and fills in DeepSpeed's defaults (`where` names the caller in errors).
 * @example
 * resolveParamOffload({ device: 'nvme', nvmePath: '/scratch' }, 'ZeroStage3').bufferCount   // 5
 */
export function resolveParamOffload(opts: OffloadParamOptions | undefined, where: string): ResolvedParamOffload {
  const defaults: ResolvedParamOffload = { device: 'none', nvmePath: null, bufferCount: 5, bufferSize: 1e8, maxInCpu: 1e9, pinMemory: false };
  if (opts === undefined) return defaults;
  const at = `${where}: offloadParam`;
  if (typeof opts !== 'object' || opts === null) throw new Error(`${at} must be an object { device: 'none' | 'cpu' | 'nvme', ... }`);
  checkKeys(opts, ['device', 'nvmePath', 'bufferCount', 'bufferSize', 'maxInCpu', 'pinMemory'], at);
  if (!['none', 'cpu', 'nvme'].includes(opts.device)) throw new Error(`${at}.device must be 'none', 'cpu' or 'nvme', got ${JSON.stringify(opts.device)}`);
  const r = { ...defaults, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) } as ResolvedParamOffload;
  for (const [key, min] of [['bufferCount', 1], ['bufferSize', 1], ['maxInCpu', 0]] as const) {
    checkRange(r[key], key, at, min);
    if (!Number.isSafeInteger(r[key])) throw new Error(`${at}.${key} must be an integer, got ${r[key]}`);
  }
  checkBool(r.pinMemory, 'pinMemory', at);
  if (r.device === 'nvme' && (typeof r.nvmePath !== 'string' || r.nvmePath === '')) {
    throw new Error(`${at}.nvmePath: a directory is required with device 'nvme', got ${JSON.stringify(r.nvmePath ?? null)}`);
  }
  return r;
}
