/**
 * Training progress: a live bar (loss, samples/s, ETA) on a terminal, plain lines otherwise,
 * and every reported step appended as one JSON line to a metrics file.
 */
import { appendFileSync } from 'node:fs';
import cliProgress from 'cli-progress';

export interface ProgressOptions {
  /** Steps in the run, for the bar and the ETA. */
  total: number;
  label?: string;
  /** Append `{step, loss, samplesPerSec, ...}` JSON lines here. */
  metricsFile?: string;
  /** Where to draw (default stderr, so stdout stays clean for results). */
  stream?: NodeJS.WriteStream;
  /** Without a terminal: print a line every this many steps (default: about 20 lines a run). */
  every?: number;
}

/** One step's numbers; anything extra (lr, tokens) is shown and logged as given. */
export interface StepMetrics {
  loss: number;
  /** Samples processed in this step. */
  samples: number;
  [key: string]: number;
}

/**
 * @example
 * const progress = new TrainingProgress({ total: steps, label: 'gpt', metricsFile: 'metrics.jsonl' });
 * for (let s = 1; s <= steps; s++) progress.update(s, { loss: train(), samples: batch });
 * progress.finish();
 */
export class TrainingProgress {
  private readonly start = performance.now();
  private samples = 0;
  private readonly bar: cliProgress.SingleBar | null;
  private readonly stream: NodeJS.WriteStream;
  private readonly every: number;

  constructor(private readonly opts: ProgressOptions) {
    if (!Number.isInteger(opts.total) || opts.total <= 0) throw new Error(`TrainingProgress: total must be a positive integer, got ${opts.total}`);
    this.stream = opts.stream ?? process.stderr;
    this.every = opts.every ?? Math.max(1, Math.round(opts.total / 20));
    if (this.stream.isTTY) {
      this.bar = new cliProgress.SingleBar(
        {
          format: `${opts.label ?? 'train'} [{bar}] {value}/{total} | loss {loss} | {rate} samples/s | ETA {eta_formatted}`,
          stream: this.stream,
          hideCursor: true,
          etaBuffer: 20,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(opts.total, 0, { loss: '-', rate: '-' });
    } else {
      this.bar = null;
    }
  }

  /** Records step `step` (1-based) and returns its throughput in samples/s over the whole run. */
  update(step: number, m: StepMetrics): number {
    this.samples += m.samples;
    const elapsed = (performance.now() - this.start) / 1000;
    const rate = this.samples / Math.max(elapsed, 1e-9);
    if (this.bar) {
      this.bar.update(step, { loss: m.loss.toFixed(4), rate: rate.toFixed(1) });
    } else if (step % this.every === 0 || step === this.opts.total) {
      const eta = (elapsed / step) * (this.opts.total - step);
      const extra = Object.entries(m)
        .filter(([k]) => k !== 'loss' && k !== 'samples')
        .map(([k, v]) => ` ${k} ${Number.isInteger(v) ? v : v.toPrecision(4)}`)
        .join('');
      this.stream.write(
        `${this.opts.label ?? 'train'} step ${step}/${this.opts.total} loss ${m.loss.toFixed(4)} ${rate.toFixed(1)} samples/s${extra} eta ${eta.toFixed(0)}s\n`,
      );
    }
    if (this.opts.metricsFile) {
      const { loss, samples, ...rest } = m;
      appendFileSync(this.opts.metricsFile, `${JSON.stringify({ step, loss, samples, samplesPerSec: rate, elapsedSec: elapsed, ...rest })}\n`);
    }
    return rate;
  }

  finish(): void {
    this.bar?.stop();
  }
}
