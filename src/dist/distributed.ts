/**
 * initDistributed: reads what the launcher put in the environment (RANK, WORLD_SIZE,
 * MASTER_ADDR, MASTER_PORT), joins the rendezvous store and builds the world group on the
 * chosen backend. Without a launcher, rank 0 serves the store itself; without RANK/WORLD_SIZE
 * the process is a world of one.
 *
 * The world group is the default that getRank(), barrier() and newGroup() use; everything else
 * takes its group (or a DeviceMesh) explicitly.
 */
import { randomBytes } from 'node:crypto';
import { engineDevice } from '../engine/placement.ts';
import { native } from '../native.ts';
import type { Device } from '../tensor/storage.ts';
import { checkingEnabled } from './checker.ts';
import type { Backend } from './communicator.ts';
import { NcclBackend, surveyNccl } from './nccl.ts';
import { type GroupContext, ProcessGroup } from './process_group.ts';
import { ShmBackend, type ShmOptions } from './shm.ts';
import { StoreClient, StoreServer } from './store.ts';

export type BackendName = 'shm' | 'nccl' | 'gloo' | 'auto';

export interface InitOptions extends ShmOptions {
  /**
   * 'shm' (one host, CPU memory), 'nccl' (CUDA tensors, one GPU per rank) or 'auto' (nccl when
   * every rank can use NCCL on a GPU of its own, else shm). Default: MESHTRAIN_BACKEND, else
   * 'shm'. 'gloo' is not built yet.
   */
  backend?: BackendName;
  /** Collective timeout in ms (default MESHTRAIN_TIMEOUT_MS or 5 minutes). */
  timeoutMs?: number;
  /** How long to wait for the store and the other ranks at set-up (default: timeoutMs). */
  storeTimeoutMs?: number;
  /** Defaults: RANK, WORLD_SIZE, MASTER_ADDR (127.0.0.1) and MASTER_PORT (29500) from the environment. */
  rank?: number;
  worldSize?: number;
  masterAddr?: string;
  masterPort?: number;
  /** Check every collective's name, shapes and dtype across ranks first (MESHTRAIN_CHECK_COLLECTIVES=1). */
  checkCollectives?: boolean;
}

/** What a backend gets to set itself up for this process (all world ranks call it together). */
export interface BackendInit {
  store: StoreClient;
  jobId: string;
  rank: number;
  size: number;
  timeoutMs: number;
  opts: InitOptions;
}

/** The backends `initDistributed({ backend })` can choose; nccl (GPU) and gloo (multi-host) plug in here. */
const BACKENDS: Partial<Record<BackendName, (init: BackendInit) => Promise<Backend>>> = {
  shm: (i) => ShmBackend.init(i.store, i.jobId, i.rank, i.size, i.timeoutMs, i.opts),
  nccl: (i) => NcclBackend.init(i),
  auto: async (i) => {
    const survey = await surveyNccl(i);
    return survey.problem ? ShmBackend.init(i.store, i.jobId, i.rank, i.size, i.timeoutMs, i.opts) : NcclBackend.fromSurvey(survey);
  },
};

interface State {
  world: ProcessGroup;
  ctx: GroupContext;
  server: StoreServer | null;
  localRank: number;
}

let state: State | null = null;

function envInt(name: string, fallback: number | undefined): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`initDistributed: ${name}=${v} is not a non-negative integer`);
  return n;
}

function current(what: string): State {
  if (!state) throw new Error(`${what}: call (and await) initDistributed() first`);
  return state;
}

/**
 * Joins the job and returns the world group.
 * @example
 * const world = await initDistributed();          // under `meshtrain --num_procs 4 train.ts`
 * world.allReduce(grad, 'avg');
 */
export async function initDistributed(opts: InitOptions = {}): Promise<ProcessGroup> {
  if (state) throw new Error('initDistributed: already initialized (call destroyDistributed() first)');
  const backendName = opts.backend ?? (process.env.MESHTRAIN_BACKEND || 'shm') as BackendName;
  const makeBackend = BACKENDS[backendName];
  if (!makeBackend) {
    throw new Error(`initDistributed: backend '${backendName}' is not available yet; available: ${Object.keys(BACKENDS).join(', ')}`);
  }
  const size = opts.worldSize ?? envInt('WORLD_SIZE', 1)!;
  const rank = opts.rank ?? envInt('RANK', 0)!;
  if (size < 1 || rank >= size) throw new Error(`initDistributed: rank ${rank} is outside a world of ${size}`);
  const timeoutMs = opts.timeoutMs ?? envInt('MESHTRAIN_TIMEOUT_MS', 300_000)!;
  const storeTimeoutMs = opts.storeTimeoutMs ?? timeoutMs;
  const addr = opts.masterAddr ?? process.env.MASTER_ADDR ?? '127.0.0.1';
  let port = opts.masterPort ?? envInt('MASTER_PORT', size === 1 ? 0 : 29500)!;

  // The launcher serves the store; without one, rank 0 does.
  let server: StoreServer | null = null;
  if (rank === 0 && process.env.MESHTRAIN_STORE_SERVED !== '1') {
    server = await StoreServer.listen(port, size === 1 ? '127.0.0.1' : '0.0.0.0');
    server.unref();
    port = server.port;
  }
  if (process.env.MESHTRAIN_LAUNCHER_PID && process.env.MESHTRAIN_LAUNCHER_PID === String(process.ppid)) {
    native.setParentDeathSignal();   // die with the launcher, never linger
  }
  const store = await StoreClient.connect(addr, port, { connectTimeoutMs: storeTimeoutMs, timeoutMs: storeTimeoutMs });
  try {
    let jobId = process.env.MESHTRAIN_JOB_ID;
    if (!jobId || !/^[A-Za-z0-9_-]+$/.test(jobId)) {
      if (rank === 0) await store.compareSet('mt/job', '', randomBytes(4).toString('hex'));
      jobId = await store.getString('mt/job', storeTimeoutMs);
    }
    const backend = await makeBackend({ store, jobId, rank, size, timeoutMs: storeTimeoutMs, opts });
    const ctx: GroupContext = { store, backend, timeoutMs, checkCollectives: opts.checkCollectives ?? checkingEnabled(), groups: new Set() };
    const ranks = Array.from({ length: size }, (_, r) => r);
    const comm = await backend.create({ store, prefix: 'mt/world', name: 'world', rank, size, globalRanks: ranks, timeoutMs });
    const world = new ProcessGroup(comm, ctx, 'mt/world', { name: 'world', rank, ranks });
    state = { world, ctx, server, localRank: envInt('LOCAL_RANK', rank)! };
    return world;
  } catch (e) {
    store.close();
    await server?.close();
    throw e;
  }
}

export function isInitialized(): boolean {
  return state !== null;
}

/** The world group (the default group). */
export function getWorld(): ProcessGroup {
  return current('getWorld').world;
}

export function getRank(): number {
  return current('getRank').world.rank;
}

export function getWorldSize(): number {
  return current('getWorldSize').world.size;
}

/**
 * The device this rank's tensors should live on: its GPU under nccl (cuda:(LOCAL_RANK % devices)); under
 * shm the same device initialize() picks (MESHTRAIN_DEVICE, else the local GPU when there is one — shm
 * stages device tensors through pinned host memory —, else 'cpu').
 * @example
 * await initDistributed({ backend: 'auto' });
 * const model = nn.moduleToDevice(new GPT(cfg), getDevice());
 */
export function getDevice(): Device {
  const b = current('getDevice').ctx.backend;
  return b instanceof NcclBackend ? b.device : engineDevice(undefined);
}

export function getLocalRank(): number {
  return current('getLocalRank').localRank;
}

/** The rendezvous store of this job (for set-up that other parts exchange). */
export function getStore(): StoreClient {
  return current('getStore').ctx.store;
}

/** Blocks until every rank has called barrier(). */
export function barrier(): void {
  current('barrier').world.barrier();
}

/** A group of the given world ranks; every rank calls it; null on ranks that are not members. */
export function newGroup(ranks: number[], opts: { name?: string } = {}): Promise<ProcessGroup | null> {
  return current('newGroup').world.newGroup(ranks, opts);
}

/** Finishes outstanding work, frees every group and leaves the store. */
export async function destroyDistributed(): Promise<void> {
  if (!state) return;
  const s = state;
  state = null;
  // Sub-groups first: NCCL communicators split from a parent are destroyed before it.
  for (const g of [...s.ctx.groups].reverse()) g.destroy();
  s.ctx.backend.destroy();
  s.ctx.store.close();
  await s.server?.close();
}
