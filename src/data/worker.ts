/**
 * The loader's worker-thread entry (run by piscina). It rebuilds the dataset and the collate
 * function from their recipes once per thread, then turns index lists into collated typed
 * arrays, which travel back transferred (not copied). It never touches the native addon:
 * tensors are made on the main thread only.
 * TypeScript loads here because worker threads inherit the parent's execArgv (`--import tsx`).
 */
import { workerData } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { type BatchArrays, batchBuffers, type Collate, fetchBatch } from './collate.ts';
import type { Dataset } from './dataset.ts';
import { unpack } from './portable.ts';

export interface WorkerTask {
  indices: number[];
  seed: number;
  epoch: number;
}

interface State {
  dataset: Dataset;
  collate: Collate;
}

let state: Promise<State> | null = null;

async function setup(): Promise<State> {
  try {
    return (await unpack(workerData)) as State;
  } catch (e) {
    throw new Error(
      `a worker could not rebuild the dataset: ${(e as Error).message} (workers load TypeScript modules through the main thread's execArgv, e.g. node --import tsx)`,
      { cause: e },
    );
  }
}

export default async function loadBatch(task: WorkerTask): Promise<unknown> {
  state ??= setup();
  const { dataset, collate } = await state;
  const batch: BatchArrays = fetchBatch(dataset, task.indices, { seed: task.seed, epoch: task.epoch }, collate);
  return move({ [transferableSymbol]: batchBuffers(batch), [valueSymbol]: batch } as never);
}
