/**
 * Layout-independent checkpoints of a PipelineEngine with a plain optimizer (ZeRO stage 0): the
 * same format and names as the ZeRO mesh checkpoint (mesh_checkpoint.ts) — every parameter under
 * the full model's name and full shape, its optimizer state as `optimizer.<name>.<state>` — so a
 * (dp, pp, tp) save loads at any other (dp', pp', tp'). The weights and the optimizer state are
 * replicated over dp, so only dp rank 0 of each (pp, tp) position writes them (the other ranks
 * write an index with their plain state only); within tp and across tied stages the writers are
 * mesh_checkpoint's. The plain optimizer counts steps per parameter: each count is saved as a
 * one-element f64 tensor `optimizer.<name>.step` (written once, by tp rank 0 of the writers).
 * Module buffers (BatchNorm's running statistics) travel by full name too (buffer_checkpoint.ts).
 * Loading verifies everything on every rank and the ranks agree (one all-reduce) before any state
 * changes, so a torn file fails on every rank rather than leaving some ranks loaded and others hung.
 */
import { loadCheckpoint, type TensorRequest } from '../engine/checkpoint/load.ts';
import { openCheckpoint } from '../engine/checkpoint/reader.ts';
import { saveCheckpoint, type TensorShard } from '../engine/checkpoint/save.ts';
import { tensor } from '../ops/create.ts';
import * as k from '../ops/kernels.ts';
import { Adam, AdamW } from '../optim/adam.ts';
import type { Optimizer } from '../optim/optimizer.ts';
import { SGD } from '../optim/sgd.ts';
import type { OptimizerStateDict, StateValue } from '../optim/state_dict.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { flatView } from '../zero/comms.ts';
import { bufferRequests, bufferShards } from './buffer_checkpoint.ts';
import { agreeToLoad } from './checkpoint_agree.ts';
import type { PipelineEngine } from './engine.ts';
import { type MeshCheckpointOptions, type MeshLoadOptions, pieces, placements } from './mesh_checkpoint.ts';

// biome-ignore lint/suspicious/noExplicitAny: any optimizer's hyperparameters
type AnyOptimizer = Optimizer<any>;

/** The state names a plain optimizer may hold per parameter (master: the fp32 copy of a 16-bit one). */
const STATE_NAMES = ['expAvg', 'expAvgSq', 'momentumBuffer', 'master'];

/** What every rank saves as plain state (the ZeRO mesh checkpoint's fields, so either loader reads it). */
interface PlainClientState {
  plain: true;
  /** The largest per-parameter step count (a ZeRO loader's single count). */
  zeroSteps: number;
  globalSteps: number;
  skippedSteps: number;
  user: unknown;
}

/** This rank's parameters: name in the module, the tensor, its index in the optimizer's state dict. */
function localParams(engine: PipelineEngine, optimizer: AnyOptimizer, where: string): { name: string; p: Tensor; idx: number }[] {
  const index = new Map<Tensor, number>();
  let i = 0;
  for (const g of optimizer.paramGroups) for (const p of g.params as Tensor[]) index.set(p, i++);
  return engine.module.namedParameters().map(([name, p]) => {
    const idx = index.get(p);
    if (idx === undefined) throw new Error(`${where}: parameter "${name}" ${JSON.stringify(p.shape)} of the pipeline module is not in the optimizer`);
    return { name, p, idx };
  });
}

/**
 * Saves `dir/tag` from every rank of the mesh (rank 0 writes `latest` last).
 * @example
 * await savePlainMeshCheckpoint(engine, adamw, 'ckpt', 'step100', { key, tpGroup: mesh.group('tp'), world });
 */
export async function savePlainMeshCheckpoint(
  engine: PipelineEngine, optimizer: AnyOptimizer, dir: string, tag: string, opts: MeshCheckpointOptions & { clientState?: unknown },
): Promise<void> {
  const where = 'savePlainMeshCheckpoint';
  engine.settle(); // a step decided on the device: the optimizer's state as it turned out
  const places = placements(engine, opts);
  const dpWriter = !engine.dpGroup || engine.dpGroup.rank === 0;
  const tpRank = opts.tpGroup && opts.tpGroup.size > 1 ? opts.tpGroup.rank : 0;
  const sd = optimizer.stateDict();
  const tensors: TensorShard[] = [];
  const owned: Tensor[] = [];
  let maxStep = 0;
  try {
    for (const { name, p, idx } of localParams(engine, optimizer, where)) {
      const ps = sd.state[idx];
      maxStep = Math.max(maxStep, ps?.step ?? 0);
      const place = places.get(name);
      if (!place) throw new Error(`${where}: no placement for "${name}"`);
      if (!dpWriter || !place.write) continue;
      const add = (full: string, src: Tensor, group: string) => {
        const flat = flatView(src, 0, src.numel);
        owned.push(flat);
        for (const piece of pieces(place.runs, [0, src.numel])) {
          const data = flat.narrow(0, piece.at, piece.n);
          owned.push(data);
          tensors.push({ name: full, fullShape: place.fullShape, dtype: src.dtype, shardRange: piece.fullRange, data, group });
        }
      };
      add(place.full, p, 'model');
      if (!ps) continue;
      for (const [sname, v] of Object.entries(ps.buffers)) {
        const t = tensor(v.data, { shape: [v.data.length], dtype: v.dtype, tag: 'optim' });
        owned.push(t);
        add(`optimizer.${place.full}.${sname}`, t, 'optimizer');
      }
      if (tpRank === 0) {
        const t = tensor([ps.step], { dtype: 'f64', tag: 'optim' });
        owned.push(t);
        tensors.push({ name: `optimizer.${place.full}.step`, fullShape: [1], dtype: 'f64', data: t, group: 'optimizer' });
      }
    }
    tensors.push(...bufferShards(engine, opts.key, dpWriter && tpRank === 0, where));
    const clientState: PlainClientState = {
      plain: true, zeroSteps: maxStep, globalSteps: engine.globalSteps, skippedSteps: engine.skippedSteps, user: opts.clientState ?? null,
    };
    await saveCheckpoint(dir, tag, {
      rank: opts.world.rank, worldSize: opts.world.size, tensors, clientState, barrier: () => {
        opts.world.barrier();
      },
    });
  } finally {
    for (const t of owned) t.dispose();
  }
}

/**
 * Loads `dir/tag` (default: latest), saved at any mesh by savePlainMeshCheckpoint (or by the ZeRO
 * mesh checkpoint: its single step count is given to every parameter with state), into this
 * rank's parameters and plain optimizer; returns the clientState given at save. Call on every rank.
 * @example
 * const client = loadPlainMeshCheckpoint(engine, adamw, 'ckpt', { key, tpGroup: mesh.group('tp'), world });
 */
export function loadPlainMeshCheckpoint(engine: PipelineEngine, optimizer: AnyOptimizer, dir: string, opts: MeshCheckpointOptions & MeshLoadOptions): unknown {
  const where = 'loadPlainMeshCheckpoint';
  engine.settle();
  let prepared: Prepared | null = null;
  let error: unknown = null;
  try {
    prepared = prepare(engine, optimizer, dir, opts, where);
  } catch (e) {
    error = e;
  }
  try {
    agreeToLoad(opts.world, error);
    const { copies, sd, client } = prepared as Prepared;
    // Everything read and verified on every rank: now change state. Weights first: a 16-bit
    // parameter saved without its fp32 master continues from its (loaded) value.
    for (const { from, into } of copies) k.copyInto(from, into);
    optimizer.loadStateDict(sd);
    engine.globalSteps = client.globalSteps;
    engine.skippedSteps = client.skippedSteps;
    return client.user;
  } finally {
    if (prepared) for (const t of prepared.owned) t.dispose();
  }
}

interface Prepared {
  copies: { from: Tensor; into: Tensor }[];
  sd: OptimizerStateDict;
  client: PlainClientState;
  owned: Tensor[];
}

function prepare(engine: PipelineEngine, optimizer: AnyOptimizer, dir: string, opts: MeshCheckpointOptions & MeshLoadOptions, where: string): Prepared {
  const places = placements(engine, opts);
  const opened = openCheckpoint(dir, opts.tag);
  const saved = opened.tensors;
  const params = localParams(engine, optimizer, where);
  checkFamily(optimizer, saved, `${dir}/${opts.tag ?? 'latest'}`, where);
  const want: TensorRequest[] = [];
  const plan: { p: Tensor; idx: number; full: string; cover: [number, number]; states: string[]; runs: ReturnType<typeof pieces>; step: boolean }[] = [];
  for (const { name, p, idx } of params) {
    const place = places.get(name);
    if (!place) throw new Error(`${where}: no placement for "${name}"`);
    const runs = pieces(place.runs, [0, p.numel]);
    const cover: [number, number] = [Math.min(...runs.map((r) => r.fullRange[0])), Math.max(...runs.map((r) => r.fullRange[1]))];
    want.push({ name: place.full, fullShape: place.fullShape, dtype: p.dtype, shardRange: cover });
    // The master copy only where the loading optimizer keeps one (a 16-bit parameter).
    const states = STATE_NAMES.filter((s) => saved.has(`optimizer.${place.full}.${s}`) && (s !== 'master' || p.dtype === 'bf16' || p.dtype === 'f16'));
    for (const s of states) want.push({ name: `optimizer.${place.full}.${s}`, fullShape: place.fullShape, dtype: 'f32', shardRange: cover });
    const step = saved.has(`optimizer.${place.full}.step`);
    if (step) want.push({ name: `optimizer.${place.full}.step`, fullShape: [1], dtype: 'f64' });
    plan.push({ p, idx, full: place.full, cover, states, runs, step });
  }
  const buffers = bufferRequests(engine, opts.key, saved, `${dir}/${opened.tag}`, opts.loadModuleStrict ?? true, where);
  want.push(...buffers.want);
  const ck = loadCheckpoint(dir, { tag: opts.tag, rank: opts.world.rank, worldSize: opts.world.size, want });
  const owned: Tensor[] = [...ck.tensors.values()];
  const client = ck.clientState as PlainClientState | null;
  if (!client || typeof client !== 'object' || !Number.isInteger(client.globalSteps) || !Number.isInteger(client.zeroSteps)) {
    throw new Error(`${where}: ${dir}/${ck.tag} was not saved by a pipeline engine's saveCheckpoint (no step counts in its state)`);
  }
  const copies: { from: Tensor; into: Tensor }[] = buffers.into.map((b) => ({ from: ck.tensors.get(b.full) as Tensor, into: b.t }));
  const sd: OptimizerStateDict = { state: {}, paramGroups: optimizer.stateDict().paramGroups };
  for (const { p, idx, full, cover, states, runs, step } of plan) {
    const src = ck.tensors.get(full) as Tensor;
    const dst = flatView(p, 0, p.numel);
    owned.push(dst);
    for (const r of runs) {
      const from = src.alias([r.n], [1], src.offset + r.fullRange[0] - cover[0]);
      const into = dst.narrow(0, r.at, r.n);
      owned.push(from, into);
      copies.push({ from, into });
    }
    // SGD without momentum keeps no buffers, only its step counts.
    if (states.length === 0 && !step) continue;
    const buffers: Record<string, StateValue> = {};
    for (const s of states) {
      const all = (ck.tensors.get(`optimizer.${full}.${s}`) as Tensor).toArray() as Float32Array;
      const data = new Float32Array(p.numel);
      for (const r of runs) data.set(all.subarray(r.fullRange[0] - cover[0], r.fullRange[1] - cover[0]), r.at);
      buffers[s] = { shape: [...p.shape], dtype: 'f32', data };
    }
    const n = step ? (ck.tensors.get(`optimizer.${full}.step`) as Tensor).toArray()[0] : client.zeroSteps;
    if (!Number.isInteger(Number(n)) || Number(n) < 0) throw new Error(`${where}: "optimizer.${full}.step" in ${dir}/${ck.tag} is ${String(n)}, not a step count`);
    sd.state[idx] = { step: Number(n), buffers };
  }
  return { copies, sd, client: { ...client, skippedSteps: client.skippedSteps ?? 0 }, owned };
}

/**
 * The checkpoint's optimizer state is the kind this optimizer keeps (Adam/AdamW moments, SGD
 * momentum): checked while reading, so a mismatch fails on every rank before anything changes.
 */
function checkFamily(optimizer: AnyOptimizer, saved: Map<string, unknown>, at: string, where: string): void {
  const names = [...saved.keys()].filter((n) => n.startsWith('optimizer.'));
  const has = (s: string) => names.some((n) => n.endsWith(`.${s}`));
  const savedKind = has('momentumBuffer') ? 'SGD (momentum)' : has('expAvg') ? 'Adam/AdamW' : null;
  const mine = optimizer instanceof AdamW || optimizer instanceof Adam ? 'Adam/AdamW' : optimizer instanceof SGD ? 'SGD (momentum)' : null;
  if (savedKind && mine && savedKind !== mine) {
    throw new Error(`${where}: ${at} holds ${savedKind} optimizer state, this pipeline engine runs ${optimizer.constructor.name}`);
  }
}
