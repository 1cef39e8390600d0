/**
 * The seam between process groups and backends. A backend implements `Communicator` for one
 * group of ranks; ProcessGroup validates arguments, runs the collective checker and keeps
 * tensors alive, then calls these with dense, same-dtype tensors whose sizes already agree.
 * `shm` (one host, CPU memory) is built in; `nccl` (CUDA memory, nccl.ts) plugs in here too.
 */

import type { DType } from '../tensor/dtype.ts';
import type { Device, MemoryTag } from '../tensor/storage.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { StoreClient } from './store.ts';

export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';
export const REDUCE_OPS: readonly ReduceOp[] = ['sum', 'avg', 'max', 'min'];

/** An operation in flight on a backend. */
export interface PendingOp {
  /** Blocks until complete; throws the backend's error. Called at most once. */
  wait(): void;
  /** Whether it has completed (successfully or not), without blocking. */
  test(): boolean;
}

/** What every backend implements; `async: false` runs to completion and returns null. */
export interface Communicator {
  readonly backend: string;
  /**
   * The device kinds whose memory this backend reads and writes in place (nccl: ['cuda']);
   * absent means ['cpu']. ProcessGroup stages operands on other devices through pinned host
   * buffers (staging.ts), so a host backend also serves CUDA tensors.
   */
  readonly devices?: readonly ('cpu' | 'cuda')[];
  /** A device backend's device on this rank (nccl: its GPU), named in errors. */
  readonly device?: Device;
  allReduce(t: Tensor, op: ReduceOp, async: boolean): PendingOp | null;
  reduce(t: Tensor, dst: number, op: ReduceOp, async: boolean): PendingOp | null;
  reduceScatter(out: Tensor, inp: Tensor, op: ReduceOp, async: boolean): PendingOp | null;
  allGather(out: Tensor, inp: Tensor, async: boolean): PendingOp | null;
  broadcast(t: Tensor, src: number, async: boolean): PendingOp | null;
  send(t: Tensor, dst: number, async: boolean): PendingOp | null;
  recv(t: Tensor, src: number, async: boolean): PendingOp | null;
  barrier(async: boolean): PendingOp | null;
  /** Debug checker: all ranks announce `description\ncall site`; throws on the first divergence. */
  check(text: string): void;
  /** A tensor whose memory peers can read in place (shm: the rank's arena), or null when not possible. */
  sharedEmpty(shape: number[], dtype: DType, tag: MemoryTag): Tensor | null;
  setTimeout(ms: number): void;
  destroy(): void;
}

/** Everything a backend needs to build the communicator of one group. */
export interface CommSetup {
  store: StoreClient;
  /** Store key prefix, identical on every member and unique to this group. */
  prefix: string;
  /** The group's name for messages, e.g. 'world' or 'tp(pp=0,dp=1)'. */
  name: string;
  rank: number;
  size: number;
  /** World rank of each group rank. */
  globalRanks: number[];
  timeoutMs: number;
  /**
   * Set by ProcessGroup.split: the parent's communicator and this rank's color. `everyRank` is
   * true when every rank of the parent joins some new group, so every parent rank calls create()
   * for this split (what a collective split such as ncclCommSplit needs).
   */
  split?: { parent: Communicator; color: number; everyRank: boolean };
}

/** A backend: creates one group's communicator (all members call it together). */
export interface Backend {
  readonly name: string;
  create(setup: CommSetup): Promise<Communicator>;
  destroy(): void;
}
