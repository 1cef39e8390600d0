/**
 * Backpropagation over the tape: nodes run in a dependency order, gradients flowing into a
 * node are summed before it runs (by the node delivering the second one, where it can add into
 * the one held, grad_into.ts), leaves accumulate into `.grad` (written by the node itself
 * where it can, grad_into.ts; a first gradient only the engine holds becomes `.grad` as it is,
 * grad_adopt.ts), and a leaf's gradient-ready hooks fire once all of its
 * contributions for this pass have arrived.
 */

import { accumulateInto, addTensors, cloneLayout, cloneTensor, onesLike } from '../ops/autograd_support.ts';
import { copyLike } from '../ops/kernels.ts';
import { tidy } from '../tensor/scope.ts';
import { fmt, sameShape } from '../tensor/shape.ts';
import { withTag } from '../tensor/tag_context.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { canAdopt, countAdopted } from './grad_adopt.ts';
import { countGradWritten, countSumWritten, GRAD_WRITTEN, type GradInto, gradIntoEnabled, takeHeldSum } from './grad_into.ts';
import { noGrad } from './grad_mode.ts';
import { type ActivationOffer, activationGradOffersEnabled, countActivationGradApplied } from './grad_through.ts';
import { clearGradZero, endGradZeroEpoch, isGradZero } from './grad_zero.ts';
import type { Node } from './node.ts';

export interface BackwardOptions {
  /** Keep saved tensors so backward can run through the same graph again. */
  retainGraph?: boolean;
  /**
   * A pass nested in another one's node (checkpoint's recomputation): leaves accumulate but
   * their hooks are left to the outer pass, which knows all of their uses.
   */
  nested?: boolean;
}

/**
 * Adds `g` into `leaf.grad`, allocated on first use. `owned`: the engine holds `g` for nothing
 * else in this pass, so a first gradient may be adopted (grad_adopt.ts). True when `g` became
 * `leaf.grad` (the caller must not free it).
 */
function accumulateLeaf(leaf: Tensor, g: Tensor, owned: boolean): boolean {
  if (leaf.disposed) return false;
  if (leaf.grad === null || leaf.grad.disposed) {
    if (owned && canAdopt(leaf, g)) {
      g.kept = true;
      leaf.grad = g;
      countAdopted();
      return true;
    }
    // The gradient takes the leaf's layout (PyTorch's contract: a channels-last leaf gets a channels-last grad).
    const copy = copyLike(g, leaf);
    copy.kept = true;
    leaf.grad = copy;
  } else {
    clearGradZero(leaf.grad);
    accumulateInto(leaf.grad, g);
  }
  return false;
}

/**
 * The destinations a node may write its inputs' gradients into: a leaf's live `.grad` in the
 * leaf's shape, dtype, device and a contiguous layout (what the writing kernels produce), for a
 * leaf that is only one input of this node (two writes, one of them overwriting, could clash);
 * and for an input produced by another node, the gradient the engine already holds for it (a
 * tensor used twice: the second gradient is added there instead of by a separate add), when
 * that is contiguous in the input's shape and its memory has no other handle (nothing else reads it).
 */
function destinations(node: Node, slots: Map<Node, Slot>): readonly (GradInto | null)[] {
  if (!node.writesGradInto || !gradIntoEnabled()) return NO_DESTINATIONS;
  // Plain loops, no closures: this runs once per node of every backward pass (host cost per op).
  const edges = node.edges;
  const out: (GradInto | null)[] = new Array(edges.length);
  for (let i = 0; i < edges.length; i++) {
    out[i] = null;
    const e = edges[i];
    if (!e) continue;
    if (!('leaf' in e)) {
      out[i] = pendingSum(node, e.node, slots, i);
      continue;
    }
    const leaf = e.leaf;
    const grad = leaf.grad;
    if (leaf.disposed || grad === null || grad.disposed || !grad.isContiguous) continue;
    if (grad.dtype !== leaf.dtype || grad.device !== leaf.device || !sameShape(grad.shape, leaf.shape)) continue;
    let uses = 0;
    for (const o of edges) if (o && 'leaf' in o && o.leaf === leaf) uses++;
    if (uses > 1 || node.hiddenLeaves.includes(leaf)) continue;
    out[i] = { grad, zero: isGradZero(grad) };
  }
  return out;
}

const NO_DESTINATIONS: readonly (GradInto | null)[] = [];

/**
 * The gradient held for `producer` (input i of `node`) when `node` may add its own into it (see
 * destinations); `shared` where another handle reads its memory (the node may return the sum instead).
 */
function pendingSum(node: Node, producer: Node, slots: Map<Node, Slot>, i: number): GradInto | null {
  const held = (slots.get(producer) as Slot).grad;
  if (held === null || held.disposed || held.kept || !held.isContiguous) return null;
  if (!sameShape(held.shape, node.inputShapes[i])) return null;
  if (edgesFrom(node, producer) !== 1) return null;
  return held.storage.holders === 1 ? { grad: held, zero: false } : { grad: held, zero: false, shared: true };
}

/** How many of `node`'s inputs `producer` made (a tensor used twice has two edges from it). */
function edgesFrom(node: Node, producer: Node): number {
  let uses = 0;
  for (const o of node.edges) if (o && 'node' in o && o.node === producer) uses++;
  return uses;
}

/** True when only one edge, not yet delivered, leads into `n` in this pass and nothing is summed there. */
function soleDelivery(n: Node, slots: Map<Node, Slot>): boolean {
  const slot = slots.get(n) as Slot;
  return slot.deps === 1 && slot.grad === null && !slot.applied;
}

/**
 * Offers for the inputs of `node` produced by an activation node (Node.activationGrad), directly
 * or through nodes that hand their gradient on unchanged (ZeRO-3's gather before backward), when
 * `node` uses that input once and each node on the way gets its gradient from this one path only:
 * taking one marks the activation's slot `applied` (grad_through.ts).
 */
function activationOffers(node: Node, slots: Map<Node, Slot>): readonly (ActivationOffer | null)[] {
  if (!node.appliesActivationGrad || !activationGradOffersEnabled()) return NO_OFFERS;
  const edges = node.edges;
  let out: (ActivationOffer | null)[] | null = null;
  for (let i = 0; i < edges.length; i++) {
    const e = edges[i];
    if (!e || 'leaf' in e) continue;
    let p = e.node;
    while (p.handsGradOn && p.edges.length === 1 && soleDelivery(p, slots)) {
      const next = p.edges[0];
      if (!next || 'leaf' in next) break;
      p = next.node;
    }
    if (!p.activationGrad || p.edges.length !== 1 || !soleDelivery(p, slots)) continue;
    if (edgesFrom(node, e.node) !== 1) continue;
    out ??= new Array<ActivationOffer | null>(edges.length).fill(null);
    const slot = slots.get(p) as Slot;
    const a = p.activationGrad;
    out[i] = { kind: a.kind, input: a.input, take: () => { slot.applied = true; } };
  }
  return out ?? NO_OFFERS;
}

const NO_OFFERS: readonly (ActivationOffer | null)[] = [];

function fireHooks(leaf: Tensor): void {
  if (leaf.hasGradReadyHooks) for (const h of leaf.gradReadyHooks) h(leaf);
}

export function backward(root: Tensor, grad: Tensor | undefined, opts: BackwardOptions = {}): void {
  if (!root.requiresGrad) {
    throw new Error(`backward: ${root} does not require grad (no input of the computation requires it)`);
  }
  if (!grad && root.numel !== 1) {
    throw new Error(`backward: the output has shape ${fmt(root.shape)}; pass a gradient for a non-scalar output`);
  }
  if (grad && !sameShape(grad.shape, root.shape)) {
    throw new Error(`backward: gradient shape ${fmt(grad.shape)} does not match output shape ${fmt(root.shape)}`);
  }

  // Count, for each node and leaf, how many edges of this graph lead into it (a leaf's count is
  // kept doubled: its low bit, set later, says some use delivered a gradient; see leafDone).
  const slots = new Map<Node, Slot>();
  const leafPending = new Map<Tensor, number>();
  let rootSlot: Slot | null = null;
  if (root.gradFn) {
    rootSlot = { node: root.gradFn, deps: 0, grad: null };
    slots.set(root.gradFn, rootSlot);
    const stack: Node[] = [root.gradFn];
    while (stack.length) {
      const n = stack.pop() as Node;
      for (const leaf of n.hiddenLeaves) leafPending.set(leaf, (leafPending.get(leaf) ?? 0) + 2);
      for (const e of n.edges) {
        if (!e) continue;
        if ('leaf' in e) {
          leafPending.set(e.leaf, (leafPending.get(e.leaf) ?? 0) + 2);
          continue;
        }
        const slot = slots.get(e.node);
        if (slot) slot.deps++;
        else {
          slots.set(e.node, { node: e.node, deps: 1, grad: null });
          stack.push(e.node);
        }
      }
    }
  }

  try {
    withTag('grad', () =>
      noGrad(() => {
        // The given gradient is only read, never written: a handle on it is enough.
        const seed = !grad ? onesLike(root) : grad.dtype === root.dtype ? grad.alias() : cloneTensor(grad, root.dtype);
        if (!rootSlot) {
          // A seed made here (ones, a cast) is ours; an alias of the caller's gradient is not (two holders).
          if (!accumulateLeaf(root, seed, true)) seed.dispose();
          if (!opts.nested) fireHooks(root);
          return;
        }
        runNodes(rootSlot, seed, slots, leafPending, opts);
      }),
    );
  } finally {
    // Writes between passes (reductions, clipping, deferred jobs) are not seen: no mark outlives a pass.
    if (!opts.nested) endGradZeroEpoch();
  }
}

/** A node's state in one pass: edges into it not yet delivered, and the gradient summed so far. */
interface Slot {
  readonly node: Node;
  deps: number;
  grad: Tensor | null;
  /** The consumer applied this activation node's backward (grad_through.ts): its gradient goes straight to its input. */
  applied?: boolean;
}

/**
 * One more use of `leaf` has delivered (`got`: with a gradient). Its count in `leafPending` is
 * uses left * 2, plus 1 once any use delivered a gradient; the last use fires its hooks if one did.
 */
function leafDone(leafPending: Map<Tensor, number>, leaf: Tensor, got: boolean, nested: boolean): void {
  const v = ((leafPending.get(leaf) as number) | (got ? 1 : 0)) - 2;
  leafPending.set(leaf, v);
  if (v === 1 && !nested) fireHooks(leaf);
}

/** Runs the nodes from `rootSlot` in dependency order (slots: every node's; leafPending: uses of each leaf). */
function runNodes(rootSlot: Slot, seed: Tensor, slots: Map<Node, Slot>, leafPending: Map<Tensor, number>, opts: BackwardOptions): void {
  const nested = opts.nested === true;
  // The gradients the slots hold now: a result found here is not ours to free or adopt.
  const inMap = new Set<Tensor>();
  const ready: Slot[] = [rootSlot];
  rootSlot.grad = seed;
  inMap.add(seed);
  while (ready.length) {
    const slot = ready.pop() as Slot;
    const node = slot.node;
    const g = slot.grad;
    slot.grad = null;
    if (g) inMap.delete(g);
    const into = g ? destinations(node, slots) : NO_DESTINATIONS;
    const through = g ? activationOffers(node, slots) : NO_OFFERS;
    let results: (Tensor | null | typeof GRAD_WRITTEN)[];
    if (!g) results = node.edges.map(() => null);
    else if (slot.applied) {
      // Already the gradient of this activation's input (its consumer applied the derivative).
      countActivationGradApplied();
      results = [g];
    } else results = tidy(() => node.run(g, into, through));
    const edges = node.edges;
    for (let i = 0; i < edges.length; i++) {
      const e = edges[i];
      const r = results[i];
      if (!e) continue;
      if ('leaf' in e) {
        if (r === GRAD_WRITTEN) {
          clearGradZero((into[i] as GradInto).grad);
          countGradWritten();
        } else if (r) {
          // Adoptable only if no pending gradient is this tensor and no other input gets it too
          // (a hook may free the adopted .grad before the next edge reads it).
          const owned = !inMap.has(r) && results.indexOf(r) === i && results.lastIndexOf(r) === i;
          accumulateLeaf(e.leaf, r, owned);
        }
        leafDone(leafPending, e.leaf, r !== null, nested);
        continue;
      }
      const next = slots.get(e.node) as Slot;
      if (r === GRAD_WRITTEN) {
        // Added into the gradient held for that input (pendingSum), which stays where it is.
        if (into[i]?.grad !== next.grad) throw new Error(`${node.name} backward: gradient ${i} was said written, but it was given no destination`);
        countSumWritten();
      } else if (r) {
        const prev = next.grad;
        if (prev && into[i]?.shared && into[i]?.grad === prev && takeHeldSum(r)) {
          // The node returned the whole sum (the held gradient included): it replaces the held one.
          countSumWritten();
          next.grad = r;
          inMap.delete(prev);
          prev.dispose();
        } else if (prev) {
          next.grad = addTensors(prev, r);
          inMap.delete(prev);
          prev.dispose();
        } else {
          // A tensor returned for several inputs (add's backward) or the incoming gradient is
          // not ours to hand on: store another handle on it, no copy (backward functions only
          // read their gradient, as the seed above relies on). A kept tensor (a leaf's grad,
          // accumulated into in place) is copied.
          next.grad = r.kept ? cloneLayout(r) : inMap.has(r) || r === g ? r.alias() : r;
        }
        inMap.add(next.grad);
      }
      if (--next.deps === 0) ready.push(next);
    }
    for (const leaf of node.hiddenLeaves) leafDone(leafPending, leaf, g !== null, nested);
    if (!opts.retainGraph) node.freeSaved();
    if (g && !inMap.has(g) && !g.kept) g.dispose(); // kept: adopted as a leaf's .grad
    for (const r of results) if (r && r !== GRAD_WRITTEN && r !== g && !inMap.has(r) && !r.disposed && !r.kept) r.dispose();
  }
}
