/**
 * Layer descriptions for a PipelineModule: a LayerSpec builds its module only on the stage that
 * holds it (so a stage never materializes the others' weights); a TiedLayerSpec is built on every
 * stage that uses its key and shares one weight between them (GPT's embedding and output head).
 */
import type { Module } from '../nn/module.ts';
import type { Tensor } from '../tensor/tensor.ts';

// biome-ignore lint/suspicious/noExplicitAny: constructor arguments are the layer's own
type Ctor<M extends Module> = new (...args: any[]) => M;

export interface LayerSpecOptions {
  /**
   * Random numbers the layer's initialization draws (e.g. 12·C² for a GPT block). Stages that do
   * not build the layer advance the generator by this much, so every layer gets the values it
   * would get in a single-process build of the same list. Without it, a skipped layer draws
   * nothing and later layers' initial values depend on the partition.
   */
  rngDraws?: number;
  /** A name for partition printouts and `type:<regex>` partitioning (default: the class name). */
  name?: string;
}

/**
 * A layer built lazily: `new cls(...args)` runs only on the stage that holds it.
 * @example
 * const spec = new LayerSpec(TransformerBlock, [{ nEmbd: 768, nHead: 12, nLayer: 12 }], { rngDraws: 12 * 768 * 768 });
 */
export class LayerSpec<M extends Module = Module> {
  readonly cls: Ctor<M>;
  readonly args: unknown[];
  readonly rngDraws: number | undefined;
  readonly name: string;

  constructor(cls: Ctor<M>, args: unknown[] = [], opts: LayerSpecOptions = {}) {
    if (typeof cls !== 'function') throw new Error(`LayerSpec: cls must be a Module class, got ${typeof cls}`);
    if (!Array.isArray(args)) throw new Error(`LayerSpec(${cls.name}): args must be an array of constructor arguments`);
    if (opts.rngDraws !== undefined && (!Number.isSafeInteger(opts.rngDraws) || opts.rngDraws < 0)) {
      throw new Error(`LayerSpec(${cls.name}): rngDraws must be a non-negative integer, got ${opts.rngDraws}`);
    }
    this.cls = cls;
    this.args = args;
    this.rngDraws = opts.rngDraws;
    this.name = opts.name ?? cls.name;
  }

  build(): M {
    return new this.cls(...this.args);
  }
}

export interface TiedLayerSpecOptions<M extends Module> extends LayerSpecOptions {
  /** How this occurrence runs (default: `module.forward(x)`), e.g. the head: `(m, x) => linear(x, m.weight)`. */
  forwardFn?: (module: M, x: Tensor) => Tensor;
  /** The tied parameter's name in the module (default 'weight'): its gradients are summed across the stages that hold the key. */
  tiedWeightAttr?: string;
}

/**
 * A layer whose module is shared by every occurrence of `key`: built once per stage that holds
 * one (only the first occurrence in the list draws random numbers), its `tiedWeightAttr`
 * broadcast from the first holder at start, and its gradient summed over the holders before each
 * optimizer step, so the copies stay identical.
 * @example
 * const embed = new TiedLayerSpec('wte', Embedding, [vocab, C]);
 * const head = new TiedLayerSpec('wte', Embedding, [vocab, C], { forwardFn: (m, x) => linear(x, m.weight) });
 */
export class TiedLayerSpec<M extends Module = Module> extends LayerSpec<M> {
  readonly key: string;
  readonly forwardFn: ((module: M, x: Tensor) => Tensor) | undefined;
  readonly tiedWeightAttr: string;

  constructor(key: string, cls: Ctor<M>, args: unknown[] = [], opts: TiedLayerSpecOptions<M> = {}) {
    super(cls, args, opts);
    if (typeof key !== 'string' || key === '') throw new Error(`TiedLayerSpec(${cls.name}): key must be a non-empty string`);
    this.key = key;
    this.forwardFn = opts.forwardFn;
    this.tiedWeightAttr = opts.tiedWeightAttr ?? 'weight';
  }
}

/** What a PipelineModule accepts as a layer. */
export type PipeLayer = Module | LayerSpec | ((x: Tensor) => Tensor);
