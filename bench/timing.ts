/** Timing helpers shared by the benchmarks: medians, since the machine is shared and noisy. */

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median seconds of one call of fn over `iters` calls, after one warm-up call. */
export function timeIt(iters: number, fn: () => void): number {
  fn();
  const t: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    fn();
    t.push((performance.now() - t0) / 1000);
  }
  return median(t);
}
