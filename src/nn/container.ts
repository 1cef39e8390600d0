/** Containers: Sequential (runs children in order) and ModuleList (holds indexed children). */
import type { Tensor } from '../tensor/tensor.ts';
import { Module } from './module.ts';

/**
 * Runs its children in order, each on the previous one's output. Children are named '0',
 * '1', ... or by the keys of an object (`{ conv: ..., bn: ... }`).
 * @example
 * const net = new Sequential(new Linear(8, 32), new ReLU(), new Linear(32, 2));
 * const y = net.forward(x);
 */
export class Sequential extends Module {
  private readonly list: Module[] = [];

  constructor(...modules: Module[] | [Record<string, Module>]) {
    super();
    const named: [string, Module][] =
      modules.length === 1 && !(modules[0] instanceof Module)
        ? Object.entries(modules[0] as Record<string, Module>)
        : (modules as Module[]).map((m, i) => [String(i), m]);
    for (const [name, m] of named) this.list.push(this.registerModule(name, m));
  }

  /** Adds a module at the end, named by its index. Returns this. */
  append(m: Module): this {
    this.list.push(this.registerModule(String(this.list.length), m));
    return this;
  }

  override replaceModule<R extends Module>(name: string, m: R): R {
    const i = this.list.indexOf(this.namedChildren().find(([n]) => n === name)?.[1] as Module);
    super.replaceModule(name, m);
    this.list[i] = m;
    return m;
  }

  get length(): number {
    return this.list.length;
  }

  /** The i-th child (negative counts from the end). */
  at(i: number): Module {
    const m = this.list.at(i);
    if (!m) throw new Error(`Sequential: no module at index ${i} (length ${this.list.length})`);
    return m;
  }

  [Symbol.iterator](): Iterator<Module> {
    return this.list[Symbol.iterator]();
  }

  override forward(x: Tensor): Tensor {
    let h = x;
    for (const m of this.list) h = m.forward(h);
    return h;
  }
}

/**
 * An indexed list of modules named '0', '1', ... (GPT's blocks `h.0`, `h.1`, ...). It has no
 * forward of its own: the owner decides how to run them.
 * @example
 * const h = new ModuleList(Array.from({ length: 12 }, () => new TransformerBlock(opts)));
 * for (const block of h) x = block.forward(x);
 */
export class ModuleList<M extends Module = Module> extends Module {
  private readonly list: M[] = [];

  constructor(modules: Iterable<M> = []) {
    super();
    for (const m of modules) this.push(m);
  }

  /** Adds a module at the end. Returns this. */
  push(m: M): this {
    this.list.push(this.registerModule(String(this.list.length), m));
    return this;
  }

  override replaceModule<R extends Module>(name: string, m: R): R {
    super.replaceModule(name, m);
    this.list[Number(name)] = m as unknown as M;
    return m;
  }

  get length(): number {
    return this.list.length;
  }

  /** The i-th module (negative counts from the end). */
  at(i: number): M {
    const m = this.list.at(i);
    if (!m) throw new Error(`ModuleList: no module at index ${i} (length ${this.list.length})`);
    return m;
  }

  [Symbol.iterator](): Iterator<M> {
    return this.list[Symbol.iterator]();
  }

  override forward(): never {
    throw new Error('ModuleList has no forward: iterate over it and call each module');
  }
}
