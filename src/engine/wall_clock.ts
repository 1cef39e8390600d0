/**
 * DeepSpeed's wall_clock_breakdown: the time the engine spends in forward, backward (with the
 * gradient communication it starts) and the optimizer step, summed between prints and reported
 * per optimizer step. Ranks are synchronous CPU processes, so wall time around each call is the
 * time of that phase.
 */

export type Phase = 'forward' | 'backward' | 'step';

/** Milliseconds per optimizer step, averaged over the steps since the previous report. */
export interface WallClockReport {
  steps: number;
  forwardMs: number;
  backwardMs: number;
  stepMs: number;
}

export class WallClock {
  private readonly totals: Record<Phase, number> = { forward: 0, backward: 0, step: 0 };
  private steps = 0;

  /** Runs `fn`, adding its wall time to `phase`. */
  time<T>(phase: Phase, fn: () => T): T {
    const t0 = performance.now();
    try {
      return fn();
    } finally {
      this.totals[phase] += performance.now() - t0;
    }
  }

  /** Counts an optimizer step (an accumulation boundary). */
  stepped(): void {
    this.steps++;
  }

  /** The averages since the last report, then starts a new interval. */
  report(): WallClockReport {
    const n = Math.max(1, this.steps);
    const r = { steps: this.steps, forwardMs: this.totals.forward / n, backwardMs: this.totals.backward / n, stepMs: this.totals.step / n };
    this.totals.forward = this.totals.backward = this.totals.step = 0;
    this.steps = 0;
    return r;
  }
}

/** "forward 12.1 ms | backward 30.4 ms | step 2.0 ms (per optimizer step, last 10)". */
export function formatWallClock(r: WallClockReport): string {
  const ms = (v: number) => `${v.toFixed(1)} ms`;
  return `forward ${ms(r.forwardMs)} | backward ${ms(r.backwardMs)} | step ${ms(r.stepMs)} (per optimizer step, last ${r.steps})`;
}
