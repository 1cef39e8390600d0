/** Token micro-batches for the pipeline examples, and one timed pipeline step over them. */
import { DataLoader, DistributedSampler, keep, type MicroBatch, syntheticTokens, type Tensor, tokenDataset } from '../src/index.ts';

export interface StreamOptions {
  /** A text file read as byte tokens; empty: 4096 synthetic sequences over `vocab`. */
  text: string;
  seq: number;
  vocab: number;
  seed: number;
  /** Rows per micro-batch. */
  micro: number;
  /** The dp size and this rank's dp index. */
  replicas: number;
  rank: number;
}

/**
 * An endless stream of micro-batches, reshuffled each epoch. Every pp and tp rank of a dp replica
 * reads the same micro-batches; replicas read disjoint shards.
 * @example
 * const stream = microBatchStream({ text: '', seq: 16, vocab: 64, seed: 0, micro: 4, replicas: 2, rank: dpRank });
 * const { loss, ms } = timedTrainBatch(engine, stream, 4);
 */
export function* microBatchStream(o: StreamOptions): Generator<MicroBatch> {
  const dataset = o.text ? tokenDataset({ file: o.text, seqLen: o.seq }) : syntheticTokens({ length: 4096, seqLen: o.seq, vocab: o.vocab, seed: o.seed });
  const sampler = new DistributedSampler(dataset, { numReplicas: o.replicas, rank: o.rank, seed: o.seed, dropLast: true });
  const loader = new DataLoader(dataset, { batchSize: o.micro, sampler, dropLast: true });
  for (let epoch = 0; ; epoch++) {
    sampler.setEpoch(epoch);
    // The loader frees a batch when asked for the next one; a step holds all of its micro-batches.
    for (const b of loader) yield (b as Tensor[]).map((t) => keep(t)) as MicroBatch;
  }
}

/** Trains one batch of the stream's next `m` micro-batches and frees them; the loss and the step's milliseconds. */
export function timedTrainBatch(engine: { trainBatch(b: MicroBatch[]): number }, stream: Iterator<MicroBatch>, m: number): { loss: number; ms: number } {
  const t0 = performance.now();
  const batch = Array.from({ length: m }, () => stream.next().value as MicroBatch);
  const loss = engine.trainBatch(batch);
  const ms = performance.now() - t0;
  for (const [x, y] of batch) {
    x.dispose();
    y.dispose();
  }
  return { loss, ms };
}
