/**
 * Reruns the calling bench script on the emulated device in timing-only mode
 * (MESHTRAIN_CUDA_EMU_SKIP_WORK=1, docs/host_floor.md) when this process has no emulated device:
 * the build is `build-emu` or MESHTRAIN_CUDA_EMU_BUILD, its reference libraries under emu-lib.
 *
 * @example
 * if (!emulated() && !cudaIsAvailable() && !rerunEmulated()) console.log('skipped: no device');
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cudaDeviceProperties, cudaIsAvailable } from '../src/index.ts';

/** Whether cuda:0 is the emulated device. */
export const emulated = (): boolean => cudaIsAvailable() && /emulated/.test(cudaDeviceProperties('cuda:0').name);

/** Whether the emulated device skips kernel bodies (MESHTRAIN_CUDA_EMU_SKIP_WORK set and not 0). */
export const skipMode = (): boolean => !!process.env.MESHTRAIN_CUDA_EMU_SKIP_WORK && process.env.MESHTRAIN_CUDA_EMU_SKIP_WORK !== '0';

/** Reruns this script on the emulated build in skip mode, waiting for it; false when there is no emulated build. */
export function rerunEmulated(): boolean {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const build = path.resolve(root, process.env.MESHTRAIN_CUDA_EMU_BUILD ?? 'build-emu');
  const addon = emulated() ? process.env.MESHTRAIN_ADDON : path.join(build, 'Release', 'meshtrain.node');
  if (!addon || !existsSync(addon)) return false;
  const env: NodeJS.ProcessEnv = { ...process.env, MESHTRAIN_ADDON: addon, MESHTRAIN_CUDA_EMU_SKIP_WORK: '1', OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '1' };
  if (!emulated()) env.MESHTRAIN_CUDA_LIB_PATH = path.join(build, 'emu-lib');
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env });
  process.exitCode = r.status ?? 1;
  return true;
}
