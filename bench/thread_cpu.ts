import { readFileSync } from 'node:fs';

/**
 * This thread's CPU milliseconds (Linux: /proc schedstat of the main thread, so not V8's compiler
 * and GC helpers; updated at scheduler ticks, so only good over many steps), else the process's.
 * @example
 * const c0 = threadCpuMs(); work(); const ms = threadCpuMs() - c0;
 */
export function threadCpuMs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    const c = process.cpuUsage();
    return (c.user + c.system) / 1000;
  }
}
