/**
 * Waiting for NCCL to build a communicator without ever hanging. ncclCommInitRankConfig and
 * ncclCommSplit run non-blocking (native/cuda/nccl_create.cc); this loop polls the native state
 * and, between polls, checks what NCCL cannot see: the deadline, a peer process that died (same
 * host: by pid, as the shm backend does), and a peer that failed and said so in the store. Any of
 * them aborts the communicator and throws an error naming the call, the group, the rank and the
 * peer; the failing rank publishes its error so that the others stop at once too.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { StoreClient } from './store.ts';

/** The native calls this loop needs (native/cuda/bindings_nccl.cc). */
export interface NcclCreateNative {
  poll(h: number): boolean;
  abandon(h: number, reason: string): string;
}

/** Where a world rank runs (from the set-up survey), to tell a dead peer from a slow one. */
export interface NcclPeer {
  host: string;
  pid?: number;
}

/** What the poll loop watches while one communicator is being built. */
export interface CreateWatch {
  store: StoreClient;
  /** Store prefix of this creation: `<prefix>/failed` carries the first failure, `<prefix>/arrived/<r>` each arrival. */
  prefix: string;
  /** This rank among the ranks taking part (the group's ranks; for a split, the parent's). */
  rank: number;
  /** World rank of each rank taking part. */
  globalRanks: number[];
  /** Every world rank's host and pid, when the survey collected them. */
  peers?: NcclPeer[];
  timeoutMs: number;
  /** What the participants call ('ncclCommSplit'), for the timeout message. */
  call: string;
}

/** How often peers are checked (process liveness, the store's failure key). */
const CHECK_EVERY_MS = 100;

/** Whether `pid` is alive on this host; a zombie its parent has not reaped counts as dead. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc here: kill() said it exists
  }
}

function rankName(w: CreateWatch, r: number): string {
  const g = w.globalRanks[r];
  return g === r ? `rank ${r}` : `rank ${r} (global ${g})`;
}

/** This process announces that it reached the call (before starting it). */
export async function arrive(w: CreateWatch): Promise<void> {
  await w.store.set(`${w.prefix}/arrived/${w.rank}`, String(process.pid));
}

/** A participant on this host whose process is gone, described; null when all live. */
function deadPeer(w: CreateWatch): string | null {
  if (!w.peers) return null;
  const host = os.hostname();
  for (const [r, g] of w.globalRanks.entries()) {
    const p = w.peers[g];
    if (r === w.rank || !p || p.host !== host || !p.pid) continue;
    if (!processAlive(p.pid)) return `${rankName(w, r)} (pid ${p.pid}) died`;
  }
  return null;
}

/** The failure a peer published for this creation, or null. */
async function peerFailure(w: CreateWatch): Promise<string | null> {
  const key = `${w.prefix}/failed`;
  if (!(await w.store.check([key]))) return null;
  return w.store.getString(key, 1000);
}

/** The participants that never announced their arrival, described. */
async function stragglers(w: CreateWatch): Promise<string> {
  const absent: number[] = [];
  await Promise.all(w.globalRanks.map(async (_, r) => {
    if (!(await w.store.check([`${w.prefix}/arrived/${r}`]))) absent.push(r);
  }));
  absent.sort((a, b) => a - b);
  if (absent.length === 0) return `every rank reached ${w.call}, but NCCL did not finish (a peer is stuck, or the network is unreachable)`;
  return `${absent.map((r) => rankName(w, r)).join(', ')} never reached ${w.call}`;
}

/** Tells the other participants why this rank gave up (the first failure wins; best effort). */
async function publish(w: CreateWatch, message: string): Promise<void> {
  try {
    await w.store.compareSet(`${w.prefix}/failed`, '', `${rankName(w, w.rank)} failed: ${message}`);
  } catch {
    // the store itself is gone: the peers learn it from their own store calls
  }
}

/**
 * Polls the native communicator `h` until it is ready; on an NCCL error, the deadline, a dead
 * peer or a peer's published failure, aborts it and throws (after publishing the reason).
 * @example
 * const h = nccl().open(dev, id, size, rank, name, timeoutMs, false, true);
 * await awaitNcclComm(nccl(), h, { store, prefix: `${prefix}/nccl/init`, rank, globalRanks, timeoutMs, call: 'ncclCommInitRankConfig' });
 */
export async function awaitNcclComm(n: NcclCreateNative, h: number, w: CreateWatch): Promise<void> {
  const start = Date.now();
  let nextCheck = start + CHECK_EVERY_MS;
  let sleepMs = 1;
  for (;;) {
    let ready: boolean;
    try {
      ready = n.poll(h);
    } catch (e) {
      await publish(w, (e as Error).message);
      throw e;
    }
    if (ready) return;
    const now = Date.now();
    let reason: string | null = null;
    // A store that stopped answering is a reason to give up too: nothing could tell us about peers.
    if (now >= nextCheck) {
      nextCheck = now + CHECK_EVERY_MS;
      const peer = await (async () => deadPeer(w) ?? (await peerFailure(w)))().catch((e: Error) => `the store cannot be read (${e.message})`);
      if (peer) reason = `cannot complete: ${peer}`;
    }
    if (!reason && now - start >= w.timeoutMs) {
      const who = await stragglers(w).catch((e: Error) => `the store cannot be read (${e.message})`);
      reason = `did not complete within ${w.timeoutMs} ms: ${who}`;
    }
    if (reason) {
      const message = n.abandon(h, reason);
      await publish(w, message);
      throw new Error(message);
    }
    await new Promise((r) => setTimeout(r, sleepMs));
    sleepMs = Math.min(sleepMs * 2, 20);
  }
}
