/**
 * A node of the dynamic tape: one recorded op, the tensors it saved for backward, and edges
 * to the nodes (or leaves) that produced its inputs. Nodes are reference counted by the
 * tensors they produced and by their consumers, so disposing the outputs of a step frees
 * every saved activation at once.
 */

import { fmt, sameShape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { GRAD_WRITTEN, type GradInto } from './grad_into.ts';
import type { ActivationGrad, ActivationOffer } from './grad_through.ts';

export type Edge = { node: Node } | { leaf: Tensor } | null;

/** Tensors that nodes save by reference instead of by alias (see `saveByReference`). */
const byReference = new WeakSet<Tensor>();

/**
 * Makes nodes save `t` itself, not a handle on its current memory: backward then reads whatever
 * `t` points at when it runs. For ZeRO stage 3's parameters, which are released after forward
 * and gathered again before backward; an alias would keep every gathered parameter alive.
 */
export function saveByReference(t: Tensor, on = true): void {
  if (on) byReference.add(t);
  else byReference.delete(t);
}

/**
 * True when nodes save `t` by reference (`saveByReference`): an op should then keep no copy of it
 * for backward either.
 * @example
 * if (!savedByReference(weight)) keepCopyForBackward(weight);
 */
export function savedByReference(t: Tensor): boolean {
  return byReference.has(t);
}

/**
 * Given the gradient of the output, returns one gradient (or null) per input. Where `into[i]` is
 * given (the node said `writesGradInto`), it may instead add input i's gradient into
 * `into[i].grad` and return GRAD_WRITTEN there (grad_into.ts). Where `through[i]` is given (the
 * node said `appliesActivationGrad`), it may instead return the gradient of that activation's
 * input and call `through[i].take()` (grad_through.ts).
 */
export type BackwardFn = (
  grad: Tensor,
  into: readonly (GradInto | null)[],
  through: readonly (ActivationOffer | null)[],
) => (Tensor | null | typeof GRAD_WRITTEN)[];

const NO_DESTINATIONS: readonly (GradInto | null)[] = [];
const NO_OFFERS: readonly (ActivationOffer | null)[] = [];

/** One shared all-null destination list per input count (backward functions only read it). */
const nullLists: (readonly null[])[] = [];
function noDestinations(n: number): readonly null[] {
  let l = nullLists[n];
  if (l === undefined) {
    l = Object.freeze(new Array<null>(n).fill(null));
    nullLists[n] = l;
  }
  return l;
}

export class Node {
  readonly edges: Edge[];
  /** Input shapes, to check what backward returns. */
  readonly inputShapes: (readonly number[])[];
  backwardFn: BackwardFn | null = null;
  /**
   * Leaves that backwardFn accumulates into directly (checkpoint's closure parameters): the
   * engine counts them as edges and fires their hooks once every use has delivered.
   */
  hiddenLeaves: readonly Tensor[] = [];
  /** backwardFn can add gradients into leaves' `.grad` itself: the engine passes destinations. */
  writesGradInto = false;
  /** backwardFn can apply an input's activation derivative itself: the engine passes offers (grad_through.ts). */
  appliesActivationGrad = false;
  /** This node is an activation whose backward a consumer may apply instead (grad_through.ts); one input. */
  activationGrad: ActivationGrad | null = null;
  /** backwardFn hands its gradient on unchanged to its one input (it may do other work): offers look through it. */
  handsGradOn = false;
  private saved: Tensor[] = [];
  private refs = 0;
  private savedFreed = false;

  constructor(
    readonly name: string,
    inputs: readonly Tensor[],
  ) {
    // Plain loops, no closures: every recorded op builds a node.
    const edges: Edge[] = [];
    const shapes: (readonly number[])[] = [];
    for (const t of inputs) {
      shapes.push(t.shape);
      if (!t.requiresGrad) edges.push(null);
      else if (t.gradFn) {
        t.gradFn.refs++;
        edges.push({ node: t.gradFn });
      } else edges.push({ leaf: t });
    }
    this.edges = edges;
    this.inputShapes = shapes;
  }

  /** Keeps `t`'s memory alive until backward has run; use the returned handle in backwardFn. */
  save(t: Tensor): Tensor {
    if (byReference.has(t)) return t;
    const a = t.alias();
    a.kept = true;
    this.saved.push(a);
    return a;
  }

  /** One more tensor or consumer refers to this node. */
  retain(): void {
    this.refs++;
  }

  release(): void {
    if (--this.refs > 0) return;
    this.freeSaved();
    for (const e of this.edges) if (e && 'node' in e) e.node.release();
  }

  /** Frees the saved tensors; backward through this node is no longer possible. */
  freeSaved(): void {
    // Called after a node's backward and again at its release: the second call has nothing to do.
    if (this.saved.length > 0) {
      for (const t of this.saved) t.dispose();
      this.saved = [];
    }
    this.savedFreed = true;
  }

  run(
    grad: Tensor,
    into: readonly (GradInto | null)[] = NO_DESTINATIONS,
    through: readonly (ActivationOffer | null)[] = NO_OFFERS,
  ): (Tensor | null | typeof GRAD_WRITTEN)[] {
    if (this.savedFreed || !this.backwardFn) {
      throw new Error(
        `backward through ${this.name} a second time: its saved tensors were freed (pass { retainGraph: true } to the first backward)`,
      );
    }
    const n = this.edges.length;
    const grads = this.backwardFn(grad, into.length ? into : noDestinations(n), through.length ? through : noDestinations(n));
    if (grads.length !== this.edges.length) {
      throw new Error(`${this.name} backward returned ${grads.length} gradients for ${this.edges.length} inputs`);
    }
    // A plain loop, no closure: this runs once per node of every backward pass.
    for (let i = 0; i < grads.length; i++) {
      const g = grads[i];
      if (g === GRAD_WRITTEN) {
        if (!into[i]) throw new Error(`${this.name} backward: gradient ${i} was said written into a .grad it was not given`);
        continue;
      }
      const shape = this.inputShapes[i];
      if (g && this.edges[i] && !sameShape(g.shape, shape)) {
        throw new Error(`${this.name} backward: gradient ${i} has shape ${fmt(g.shape)}, input has ${fmt(shape)}`);
      }
    }
    return grads;
  }
}
