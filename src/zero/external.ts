/**
 * External parameters (DeepSpeed's `register_external_parameter`): a parameter that a module's
 * forward reads although another module owns it, such as GPT's output head reading the token
 * embedding's weight. ZeRO stage 3 gathers it around that module's forward and backward too.
 * Model code may register them at construction; any ZeRO-3 optimizer built later picks them up.
 */
import type { Module } from '../nn/module.ts';
import type { Tensor } from '../tensor/tensor.ts';

const registry = new WeakMap<Module, Set<Tensor>>();

/**
 * Declares that `module`'s forward uses `param`, a parameter registered elsewhere in the model.
 * Harmless without ZeRO stage 3.
 * @example
 * // in GPT's constructor: the head reads wte.weight in GPT.forward
 * registerExternalParameter(this, this.wte.weight);
 */
export function registerExternalParameter(module: Module, param: Tensor): void {
  if (typeof module?.namedModules !== 'function') throw new Error('registerExternalParameter: module must be a Module');
  if (typeof param?.alias !== 'function') throw new Error('registerExternalParameter: param must be a Tensor');
  let set = registry.get(module);
  if (!set) {
    set = new Set();
    registry.set(module, set);
  }
  set.add(param);
}

/** The external parameters registered on `module` (empty when none). */
export function externalParameters(module: Module): Tensor[] {
  return [...(registry.get(module) ?? [])];
}
