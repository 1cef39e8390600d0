/**
 * Applies a tensor-parallel plan (partitioners/tensor.ts) to a model in place: each selected
 * module is swapped for its tensor-parallel counterpart under the same name, holding this tp
 * rank's slice of the module's current weights. Built from the same seed, the parallelized
 * model therefore starts from exactly the shards of the unsharded model, and its parameter names
 * are the unsharded model's (state_dict.ts relies on that). The model is built whole first, so
 * each rank briefly holds the full weights (fine up to a few billion parameters on a host).
 */
import { matchPlan, type PlanAssignment, type Redistribute, type TensorParallelPlan } from '../../partitioners/tensor.ts';
import { DeviceMesh } from '../dist/mesh.ts';
import type { ProcessGroup } from '../dist/process_group.ts';
import { Dropout } from '../nn/activation.ts';
import { CausalSelfAttention } from '../nn/attention.ts';
import { Embedding } from '../nn/embedding.ts';
import { withoutInit } from '../nn/init.ts';
import { Linear } from '../nn/linear.ts';
import type { Module } from '../nn/module.ts';
import { LayerNorm } from '../nn/norm.ts';
import * as k from '../ops/kernels.ts';
import { fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { externalParameters, registerExternalParameter } from '../zero/external.ts';
import { ParallelCausalSelfAttention } from './attention.ts';
import { VocabParallelEmbedding } from './embedding.ts';
import { ColumnParallelLinear, RowParallelLinear } from './layers.ts';
import {
  allGatherFromSequence, copyToRegion, gatherFromSequence, reduceFromRegion, reduceScatterToSequence, scatterToSequence,
} from './mappings.ts';
import { withTensorParallelRng } from './random.ts';
import { SequenceParallelDropout, SequenceParallelLayerNorm } from './sequence_modules.ts';
import { markSequenceParallel } from './sequence_parallel.ts';
import { type ShardLayout, sliceShard } from './shard_layout.ts';

/**
 * Splits `model`'s modules across the tp group of `mesh` (or the given group) as `plan` says,
 * in place; returns the model. Everything is checked before anything changes: a style on the
 * wrong kind of module, or a size that does not divide by tp, is an error naming the module,
 * its shapes and the numbers. Build optimizers and data parallelism after this call.
 * @example
 * manualSeed(0);
 * const model = parallelize(new GPT(gptConfig('tiny')), gptTensorParallelPlan(), mesh);
 * const loss = vocabParallelCrossEntropy(model.forward(ids), targets, mesh.group('tp'));
 */
export function parallelize<M extends Module>(model: M, plan: TensorParallelPlan, meshOrGroup: DeviceMesh | ProcessGroup): M {
  const group = meshOrGroup instanceof DeviceMesh ? meshOrGroup.group('tp') : meshOrGroup;
  const modules = new Map(model.namedModules());
  const assignments = matchPlan(plan, [...modules.keys()]);
  const byName = new Map(assignments.map((a) => [a.name, a]));
  const position = new Map([...modules.keys()].map((n, i) => [n, i]));
  const errors = [...assignments]
    .sort((a, b) => (position.get(a.name) ?? 0) - (position.get(b.name) ?? 0))
    .map((a) => check(a, modules.get(a.name) as Module, group.size, byName))
    .filter((e): e is string => e !== null);
  if (errors.length === 1) throw new Error(`parallelize (tp = ${group.size}): ${errors[0]}`);
  if (errors.length) throw new Error(`parallelize (tp = ${group.size}): ${errors.length} modules cannot be split:\n  ${errors.join('\n  ')}`);
  // Deepest first: 'heads' adopts its projections once they are parallel.
  const order = [...assignments].sort((a, b) => depth(b.name) - depth(a.name));
  for (const a of order) apply(model, a, modules.get(a.name) as Module, group, plan.sequenceParallel ?? false);
  return model;
}

function depth(name: string): number {
  return name.split('.').length;
}

function shapeOf(m: Module): string {
  const w = (m as { weight?: Tensor | null }).weight;
  return w ? `${m.constructor.name}, weight ${fmt(w.shape)}` : m.constructor.name;
}

function indivisible(a: PlanAssignment, m: Module, what: string, n: number, by: number, tp: number): string | null {
  if (n % by === 0) return null;
  const per = by === tp ? `tp = ${tp}` : `${by / tp} blocks x tp = ${tp}`;
  return `${a.name} (${shapeOf(m)}): '${a.entry.style}' splits its ${what} ${n} over ${per}, which does not divide it`;
}

/** Why `a` cannot apply to `m` at this tp size, or null. */
function check(a: PlanAssignment, m: Module, tp: number, byName: Map<string, PlanAssignment>): string | null {
  const { style } = a.entry;
  const wrong = (want: string) => `${a.name} is a ${m.constructor.name}; '${style}' applies to ${want}`;
  switch (style) {
    case 'colwise':
      if (!(m instanceof Linear)) return wrong('Linear');
      if ((a.entry.stacked ?? 1) > 1 && a.entry.gatherOutput) return `${a.name}: 'colwise' with stacked ${a.entry.stacked} cannot gatherOutput (the gathered blocks would interleave)`;
      return indivisible(a, m, 'output features', m.outFeatures, (a.entry.stacked ?? 1) * tp, tp);
    case 'rowwise':
      if (!(m instanceof Linear)) return wrong('Linear');
      // Each rank holds a partial sum: an activation must wait for the all-reduce.
      if (m.activation) return `${a.name}: 'rowwise' cannot shard a Linear with activation '${m.activation}' (it applies to the summed output); use 'colwise'`;
      return indivisible(a, m, 'input features', m.inFeatures, tp, tp);
    case 'vocab':
      if (!(m instanceof Embedding)) return wrong('Embedding');
      return indivisible(a, m, 'vocabulary (rows)', m.numEmbeddings, tp, tp);
    case 'heads': {
      if (!(m instanceof CausalSelfAttention)) return wrong('CausalSelfAttention');
      const qkv = byName.get(`${a.name}.c_attn`)?.entry;
      const proj = byName.get(`${a.name}.c_proj`)?.entry;
      if (qkv?.style !== 'colwise' || qkv.stacked !== 3 || proj?.style !== 'rowwise') {
        return `${a.name}: 'heads' needs ${a.name}.c_attn { style: 'colwise', stacked: 3 } and ${a.name}.c_proj 'rowwise' in the plan`;
      }
      return indivisible(a, m, 'heads', m.nHead, tp, tp);
    }
    default:
      return null;
  }
}

/** Copies `rank`'s slice of `full` into `local`. */
function loadSlice(local: Tensor, full: Tensor, layout: ShardLayout | null, group: ProcessGroup): void {
  const piece = sliceShard(full, layout, group.rank, group.size);
  k.copyInto(piece, local);
  piece.dispose();
}

function apply(model: Module, a: PlanAssignment, m: Module, group: ProcessGroup, sequenceParallel: boolean): void {
  const e = a.entry;
  let out: Module = m;
  const rows = (blocks = 1): ShardLayout => ({ dim: 0, blocks });
  if (e.style === 'colwise' && m instanceof Linear) {
    const stacked = e.stacked ?? 1;
    const c = withoutInit(() => new ColumnParallelLinear(m.inFeatures, m.outFeatures, {
      group, bias: m.bias !== null, dtype: m.weight.dtype, stacked, gatherOutput: e.gatherOutput, sequenceParallel,
      activation: m.activation ?? undefined,
    }));
    loadSlice(c.weight, m.weight, rows(stacked), group);
    if (c.bias && m.bias) loadSlice(c.bias, m.bias, rows(stacked), group);
    out = c;
  } else if (e.style === 'rowwise' && m instanceof Linear) {
    const r = withoutInit(() => new RowParallelLinear(m.inFeatures, m.outFeatures, {
      group, bias: m.bias !== null, dtype: m.weight.dtype, inputIsParallel: e.inputIsParallel, sequenceParallel,
    }));
    loadSlice(r.weight, m.weight, { dim: 1, blocks: 1 }, group);
    if (r.bias && m.bias) loadSlice(r.bias, m.bias, null, group);
    out = r;
  } else if (e.style === 'vocab' && m instanceof Embedding) {
    const v = withoutInit(() => new VocabParallelEmbedding(m.numEmbeddings, m.embeddingDim, { group, dtype: m.weight.dtype }));
    loadSlice(v.weight, m.weight, rows(), group);
    out = v;
  } else if (e.style === 'heads' && m instanceof CausalSelfAttention) {
    out = new ParallelCausalSelfAttention(
      { nEmbd: m.nEmbd, nHead: m.nHead, dropout: m.dropout, group },
      { c_attn: m.c_attn as unknown as ColumnParallelLinear, c_proj: m.c_proj as unknown as RowParallelLinear },
    );
  } else if (e.style === 'sequence') {
    out = sequenceModule(m, group);
  }
  out.training = m.training;
  if (out !== m) {
    const dot = a.name.lastIndexOf('.');
    model.getSubmodule(dot < 0 ? '' : a.name.slice(0, dot)).replaceModule(a.name.slice(dot + 1), out);
    carryExternalParameters(model, m, out);
    // The old leaf's tensors were copied; an attention module's children live on in `out`.
    if (!(m instanceof CausalSelfAttention)) m.dispose();
  }
  if (e.input) {
    const f = redistribute(e.input);
    out.registerForwardPreHook((_, args) => [f(args[0] as Tensor, group), ...args.slice(1)]);
  }
  if (e.output) {
    const f = redistribute(e.output);
    out.registerForwardHook((_, __, y) => f(y as Tensor, group));
  }
}

/**
 * Where another module's forward reads one of `m`'s parameters (GPT's tied head reads wte.weight),
 * registered for ZeRO stage 3 with `registerExternalParameter`, registers `out`'s parameter of the
 * same name too: stage 3 then gathers the shard (the old tensor, no longer in the model, is skipped).
 */
function carryExternalParameters(model: Module, m: Module, out: Module): void {
  const replacement = new Map<Tensor, Tensor>();
  const fresh = new Map(out.namedParameters({ recurse: false }));
  for (const [name, p] of m.namedParameters({ recurse: false })) {
    const q = fresh.get(name);
    if (q) replacement.set(p, q);
  }
  if (replacement.size === 0) return;
  for (const mod of model.modules()) {
    for (const t of externalParameters(mod)) {
      const q = replacement.get(t);
      if (q) registerExternalParameter(mod, q);
    }
  }
}

/** `m` for a sequence-parallel region: LayerNorm and Dropout by their counterparts, any other module wrapped. */
function sequenceModule(m: Module, group: ProcessGroup): Module {
  if (m instanceof LayerNorm) {
    const ln = withoutInit(() => new SequenceParallelLayerNorm(m.normalizedShape, {
      eps: m.eps, elementwiseAffine: m.weight !== null, bias: m.bias !== null, dtype: m.weight?.dtype,
    }));
    if (ln.weight && m.weight) k.copyInto(m.weight, ln.weight);
    if (ln.bias && m.bias) k.copyInto(m.bias, ln.bias);
    return ln;
  }
  if (m instanceof Dropout) return new SequenceParallelDropout(m.p, group);
  // Its own parameters see only this rank's tokens; its random ops draw per-rank masks.
  markSequenceParallel(...m.parameters({ recurse: false }));
  const impl = m.forward;
  m.forward = (...args: unknown[]) => withTensorParallelRng(group, () => impl.apply(m, args));
  return m;
}

const REDISTRIBUTE: Record<Redistribute, (x: Tensor, group: ProcessGroup) => Tensor> = {
  copyToRegion,
  reduceFromRegion,
  scatterToSequence: (x, g) => scatterToSequence(x, g),
  gatherFromSequence: (x, g) => gatherFromSequence(x, g),
  allGatherFromSequence: (x, g) => allGatherFromSequence(x, g),
  reduceScatterToSequence: (x, g) => reduceScatterToSequence(x, g),
};

function redistribute(r: Redistribute): (x: Tensor, group: ProcessGroup) => Tensor {
  return REDISTRIBUTE[r];
}

