/**
 * Module: the base of every layer and model. It owns named parameters (leaf tensors tagged
 * 'param' that require grad), buffers (e.g. BatchNorm's running statistics) and child modules,
 * and carries the hooks that data parallelism and ZeRO hang their work on: forward pre/post
 * hooks and "this parameter's gradient is ready" hooks.
 */
import { keep } from '../tensor/scope.ts';
import { Tensor } from '../tensor/tensor.ts';
import { type LoadResult, loadInto } from './state_dict.ts';

/** Runs before forward with its arguments; may return replacement arguments. */
export type ForwardPreHook = (module: Module, args: unknown[]) => unknown[] | undefined;
/** Runs after forward with its arguments and output; may return a replacement output. */
export type ForwardHook = (module: Module, args: unknown[], output: unknown) => unknown;
/** Runs once the named parameter's gradient for the current backward pass is complete. */
export type ParamGradHook = (name: string, param: Tensor) => void;

/** What a `register*Hook` returns: `remove()` unregisters the hook (idempotent). */
export interface RemovableHandle {
  remove(): void;
}

export interface NamedOptions {
  /** Prepended to every name, joined with a dot. */
  prefix?: string;
  /** Include descendants (default true). */
  recurse?: boolean;
}

const NAME = /^[^.\s]+$/;

function addGradHook(p: Tensor, fn: (param: Tensor) => void): RemovableHandle {
  const hook = (t: Tensor) => fn(t);
  p.gradReadyHooks.push(hook);
  return { remove: () => removeOnce(p.gradReadyHooks, hook) };
}

function join(prefix: string, name: string): string {
  return prefix ? `${prefix}.${name}` : name;
}

function removeOnce<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}

/**
 * Base class of layers and models. Subclasses register their state in the constructor and
 * implement `forward`; parents call `child.forward(x)` directly and hooks still run.
 * @example
 * class TwoLayer extends Module {
 *   fc1 = this.registerModule('fc1', new Linear(8, 16));
 *   fc2 = this.registerModule('fc2', new Linear(16, 2));
 *   forward(x: Tensor): Tensor { return this.fc2.forward(relu(this.fc1.forward(x))); }
 * }
 * const m = new TwoLayer();
 * m.registerForwardPreHook((mod, args) => console.log('in', mod.constructor.name));
 * for (const [name, p] of m.namedParameters()) console.log(name, p.shape);
 */
export abstract class Module {
  /** Training mode (dropout active, batch statistics); set by `train()` / `eval()`. */
  training = true;
  private readonly _parameters = new Map<string, Tensor>();
  private readonly _buffers = new Map<string, Tensor>();
  private readonly _nonPersistent = new Set<string>();
  private readonly _modules = new Map<string, Module>();
  private readonly _preHooks: ForwardPreHook[] = [];
  private readonly _postHooks: ForwardHook[] = [];
  private _hooked: ((...args: unknown[]) => unknown) | null = null;

  // biome-ignore lint/suspicious/noExplicitAny: each layer narrows its own signature
  abstract forward(...args: any[]): any;

  constructor() {
    this.installHookedForward();
  }

  private checkName(name: string, kind: string): void {
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw new Error(`${this.constructor.name}: ${kind} name ${JSON.stringify(name)} must be non-empty, without dots or spaces`);
    }
    if (this._parameters.has(name) || this._buffers.has(name) || this._modules.has(name)) {
      throw new Error(`${this.constructor.name}: ${kind} name "${name}" is already registered`);
    }
  }

  /**
   * Registers a parameter: a floating-point leaf tensor tagged 'param' (create it with
   * `{ tag: 'param' }` or inside `withTag('param', ...)`). It is kept out of `tidy()` scopes and
   * made to require grad. Returns the tensor.
   */
  registerParameter(name: string, t: Tensor): Tensor {
    this.checkName(name, 'parameter');
    if (!(t instanceof Tensor)) throw new Error(`${this.constructor.name}: parameter "${name}" must be a Tensor`);
    if (!t.isLeaf) throw new Error(`${this.constructor.name}: parameter "${name}" must be a leaf tensor (use detach())`);
    if (t.storage.tag !== 'param') {
      throw new Error(
        `${this.constructor.name}: parameter "${name}" ${t} is tagged '${t.storage.tag}'; create parameters with { tag: 'param' } or inside withTag('param', ...)`,
      );
    }
    t.requiresGrad_(true);
    keep(t);
    this._parameters.set(name, t);
    return t;
  }

  /**
   * Registers a buffer: state saved in the state dict but not trained (BatchNorm's running
   * statistics, tagged 'other'). `persistent: false` leaves it out of `stateDict()`.
   */
  registerBuffer(name: string, t: Tensor, opts: { persistent?: boolean } = {}): Tensor {
    this.checkName(name, 'buffer');
    if (!(t instanceof Tensor)) throw new Error(`${this.constructor.name}: buffer "${name}" must be a Tensor`);
    keep(t);
    this._buffers.set(name, t);
    if (opts.persistent === false) this._nonPersistent.add(name);
    return t;
  }

  /** Registers a child module under `name` (its state appears as `name.*`). Returns the child. */
  registerModule<M extends Module>(name: string, m: M): M {
    this.checkName(name, 'module');
    if (!(m instanceof Module)) throw new Error(`${this.constructor.name}: module "${name}" must be a Module`);
    this._modules.set(name, m);
    return m;
  }

  /**
   * Replaces the child registered under `name` by `m`, keeping its place in the order, and
   * re-points this module's property of that name when it held the old child (how
   * `parallelize` swaps layers in place). Returns `m`.
   */
  replaceModule<M extends Module>(name: string, m: M): M {
    const old = this._modules.get(name);
    if (!old) throw new Error(`${this.constructor.name}: no child module "${name}" to replace (children: ${[...this._modules.keys()].join(', ') || 'none'})`);
    if (!(m instanceof Module)) throw new Error(`${this.constructor.name}: replacement for "${name}" must be a Module`);
    this._modules.set(name, m);
    const fields = this as unknown as Record<string, unknown>;
    if (fields[name] === old) fields[name] = m;   // `readonly` is a compile-time promise only
    return m;
  }

  /** Direct children, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this._modules];
  }

  children(): Module[] {
    return [...this._modules.values()];
  }

  /** This module ('' or the prefix) and every descendant, each once, depth first. */
  namedModules(opts: { prefix?: string } = {}): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const walk = (m: Module, name: string) => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([name, m]);
      for (const [n, c] of m._modules) walk(c, join(name, n));
    };
    walk(this, opts.prefix ?? '');
    return out;
  }

  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }

  /** Parameters or buffers with dotted names, each tensor once (under its first name). */
  private namedTensors(kind: '_parameters' | '_buffers', opts: NamedOptions): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    const mods: [string, Module][] = opts.recurse === false ? [[opts.prefix ?? '', this]] : this.namedModules(opts);
    for (const [prefix, m] of mods) {
      for (const [n, t] of m[kind]) {
        if (seen.has(t)) continue;
        seen.add(t);
        out.push([join(prefix, n), t]);
      }
    }
    return out;
  }

  /**
   * Every parameter with its dotted name, each tensor once: a tensor shared by two modules
   * (a tied embedding and head) appears under its first name only.
   */
  namedParameters(opts: NamedOptions = {}): [string, Tensor][] {
    return this.namedTensors('_parameters', opts);
  }

  parameters(opts: { recurse?: boolean } = {}): Tensor[] {
    return this.namedParameters(opts).map(([, t]) => t);
  }

  /** Every buffer with its dotted name, each tensor once. */
  namedBuffers(opts: NamedOptions = {}): [string, Tensor][] {
    return this.namedTensors('_buffers', opts);
  }

  buffers(opts: { recurse?: boolean } = {}): Tensor[] {
    return this.namedBuffers(opts).map(([, t]) => t);
  }

  /** The number of parameter elements (shared tensors counted once). */
  numParameters(): number {
    let n = 0;
    for (const p of this.parameters()) n += p.numel;
    return n;
  }

  /** The parameter with this dotted name (relative to this module). */
  getParameter(name: string): Tensor {
    const dot = name.lastIndexOf('.');
    const owner = dot < 0 ? this : this.getSubmodule(name.slice(0, dot));
    const p = owner._parameters.get(name.slice(dot + 1));
    if (!p) throw new Error(`${this.constructor.name}: no parameter "${name}"`);
    return p;
  }

  /** The descendant at this dotted path ('' is this module). */
  getSubmodule(path: string): Module {
    let m: Module = this;
    if (path === '') return m;
    for (const part of path.split('.')) {
      const c = m._modules.get(part);
      if (!c) throw new Error(`${this.constructor.name}: no submodule "${path}" ("${part}" not found in ${m.constructor.name})`);
      m = c;
    }
    return m;
  }

  /**
   * Parameters and persistent buffers by dotted name, in registration order, like PyTorch's
   * state_dict: a shared tensor appears under each of its names. The values are the module's
   * own tensors (not copies): read them, do not dispose them.
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [prefix, m] of this.namedModules()) {
      for (const [n, t] of m._parameters) out[join(prefix, n)] = t;
      for (const [n, t] of m._buffers) if (!m._nonPersistent.has(n)) out[join(prefix, n)] = t;
    }
    return out;
  }

  /**
   * Copies values from `sd` into this module's parameters and buffers (converting dtype).
   * With `strict` (default) missing and unexpected keys are an error; a shape mismatch always
   * is. Everything is checked before anything is copied. The error lists each problem, with
   * both shapes for mismatches and the closest key name for a likely typo.
   */
  loadStateDict(sd: Record<string, Tensor> | Map<string, Tensor>, opts: { strict?: boolean } = {}): LoadResult {
    return loadInto(this.constructor.name, this.stateDict(), sd, opts.strict ?? true, (key, shape) => this.stateDictShapeHint(key, shape));
  }

  /**
   * Why a saved tensor of `savedShape` does not fit this module's state `key`, when an option of
   * the module explains it (e.g. GPT's padded vocabulary), else null: added to the shape-mismatch
   * errors of loadStateDict and of checkpoint loads.
   */
  stateDictShapeHint(_key: string, _savedShape: readonly number[]): string | null {
    return null;
  }

  /** Sets training mode here and in every descendant. Returns this. */
  train(mode = true): this {
    if (typeof mode !== 'boolean') throw new Error(`train: mode must be a boolean, got ${mode}`);
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  /** Evaluation mode (`train(false)`). Returns this. */
  eval(): this {
    return this.train(false);
  }

  /** Drops every parameter's gradient (frees it; the next backward allocates afresh). */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      if (p.grad && !p.grad.disposed) p.grad.dispose();
      p.grad = null;
    }
  }

  /** Frees every parameter and buffer of this module and its descendants. */
  dispose(): void {
    for (const t of this.parameters()) t.dispose();
    for (const t of this.buffers()) t.dispose();
  }

  /**
   * Runs `fn(module, args)` before every call of `forward`, including calls a parent makes
   * directly; returning an array replaces the arguments (another value replaces them by that
   * one value). Hooks run in registration order.
   */
  registerForwardPreHook(fn: ForwardPreHook): RemovableHandle {
    if (typeof fn !== 'function') throw new Error('registerForwardPreHook: fn must be a function');
    this.installHookedForward();
    const hook: ForwardPreHook = (m, a) => fn(m, a);
    this._preHooks.push(hook);
    return { remove: () => removeOnce(this._preHooks, hook) };
  }

  /** Runs `fn(module, args, output)` after every call of `forward`; a returned value other than undefined replaces the output. */
  registerForwardHook(fn: ForwardHook): RemovableHandle {
    if (typeof fn !== 'function') throw new Error('registerForwardHook: fn must be a function');
    this.installHookedForward();
    const hook: ForwardHook = (m, a, o) => fn(m, a, o);
    this._postHooks.push(hook);
    return { remove: () => removeOnce(this._postHooks, hook) };
  }

  /**
   * Makes this instance's `forward` run the hooks: the constructor wraps the class's forward
   * (so even a reference taken before any hook exists runs hooks registered later), and each
   * registration re-wraps when a subclass replaced it with an instance property (an arrow
   * function field). A subclass's `super.forward(x)` reaches the parent's method unwrapped,
   * so hooks never run twice.
   */
  private installHookedForward(): void {
    if (this._hooked !== null && this.forward === this._hooked) return;
    const impl: (...args: unknown[]) => unknown = this.forward;
    if (typeof impl !== 'function') return;
    const hooked = (...args: unknown[]): unknown => {
      if (this._preHooks.length === 0 && this._postHooks.length === 0) return impl.apply(this, args);
      let a = args;
      for (const h of [...this._preHooks]) {
        const r = h(this, a);
        if (r !== undefined) a = Array.isArray(r) ? r : [r];
      }
      let out = impl.apply(this, a);
      for (const h of [...this._postHooks]) {
        const r = h(this, a, out);
        if (r !== undefined) out = r;
      }
      return out;
    };
    this._hooked = hooked;
    this.forward = hooked;
  }

  /**
   * Runs `fn(param)` each time `param`'s gradient for a backward pass is complete (once per
   * pass, after every use of it has contributed). `param` is one of this module's parameters
   * or its dotted name.
   * @example
   * model.registerGradReadyHook('fc.weight', (p) => startAllReduce(p.grad!));
   */
  registerGradReadyHook(param: Tensor | string, fn: (param: Tensor) => void): RemovableHandle {
    if (typeof fn !== 'function') throw new Error('registerGradReadyHook: fn must be a function');
    const p = typeof param === 'string' ? this.getParameter(param) : param;
    if (!(p instanceof Tensor) || !this.parameters().includes(p)) {
      throw new Error(`registerGradReadyHook: ${p} is not a parameter of this ${this.constructor.name}`);
    }
    return addGradHook(p, fn);
  }

  /**
   * Runs `fn(name, param)` whenever any parameter's gradient for a backward pass is complete:
   * a grad-ready hook on each parameter present now (shared ones once, under their first name).
   */
  registerParamGradHook(fn: ParamGradHook): RemovableHandle {
    if (typeof fn !== 'function') throw new Error('registerParamGradHook: fn must be a function');
    const handles = this.namedParameters().map(([name, p]) => addGradHook(p, () => fn(name, p)));
    return { remove: () => handles.forEach((h) => h.remove()) };
  }

  /** One line per module: its name, class and extra description, indented by depth. */
  toString(): string {
    const lines = this.namedModules().map(([name, m]) => {
      const depth = name === '' ? 0 : name.split('.').length;
      const extra = m.extraRepr();
      return `${'  '.repeat(depth)}${name === '' ? '' : `(${name.split('.').pop()}): `}${m.constructor.name}${extra ? `(${extra})` : ''}`;
    });
    return lines.join('\n');
  }

  /** A short description of this module's settings for `toString()`. */
  protected extraRepr(): string {
    return '';
  }
}

export type { LoadResult };
