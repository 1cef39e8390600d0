/**
 * Recipes: how a worker thread rebuilds a dataset, a transform or a collate function. Functions
 * and class instances cannot be posted to a worker, so each portable value carries the module
 * that makes it, the export to call and the (structured-cloneable) arguments. Arguments may hold
 * other portable values (a Compose of transforms) and SharedArrayBuffers (shared, not copied).
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** `import(module)[name](...args)` rebuilds the value; with `args` null, the export itself is the value. */
export interface Recipe {
  module: string;
  name: string;
  args: unknown[] | null;
}

const RECIPE = Symbol.for('meshtrain.data.recipe');

/** What `pack` produces: structured-cloneable, with recipes in place of portable values. */
interface Packed {
  $recipe: Recipe;
}

/**
 * Marks `value` as rebuildable in a worker by calling the export `name` of `module` with `args`
 * (or, without `args`, as being that export itself). Returns `value`.
 * @example
 * // my_transforms.ts
 * export function Cutout(size: number): Transform {
 *   return portable((img, rng) => cutout(img, size, rng), import.meta.url, 'Cutout', [size]);
 * }
 * export const invert: Transform = portable((img) => ..., import.meta.url, 'invert');
 */
export function portable<T extends object>(value: T, module: string, name: string, args: unknown[] | null = null): T {
  Object.defineProperty(value, RECIPE, { value: { module, name, args }, enumerable: false, configurable: true });
  return value;
}

export function recipeOf(value: unknown): Recipe | undefined {
  if ((typeof value === 'object' || typeof value === 'function') && value !== null) {
    return (value as { [RECIPE]?: Recipe })[RECIPE];
  }
  return undefined;
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Replaces portable values by their recipes, recursively; `what` names the value in errors. */
export function pack(value: unknown, what: string): unknown {
  const r = recipeOf(value);
  if (r) {
    const args = r.args === null ? null : r.args.map((a, i) => pack(a, `${what} argument ${i}`));
    return { $recipe: { module: r.module, name: r.name, args } } satisfies Packed;
  }
  if (typeof value === 'function') {
    throw new Error(
      `${what}: a function cannot be sent to a worker thread; wrap it with portable(fn, import.meta.url, 'exportName', args) or use numWorkers: 0`,
    );
  }
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((v, i) => pack(v, `${what}[${i}]`));
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return value;
  if (isPlainObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, pack(v, `${what}.${k}`)]));
  }
  throw new Error(
    `${what}: a ${value.constructor?.name ?? 'class'} instance cannot be sent to a worker thread; give it a recipe with portable(value, import.meta.url, 'factoryName', args) or use numWorkers: 0`,
  );
}

/**
 * Loads a recipe's module. Under Node 20, `--import tsx` gives worker threads tsx's require
 * hook but not its ESM hooks, so a TypeScript module that `import()` cannot load is required.
 */
async function load(module: string): Promise<Record<string, unknown>> {
  try {
    return (await import(module)) as Record<string, unknown>;
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_UNKNOWN_FILE_EXTENSION' || !module.startsWith('file:')) throw e;
    const file = fileURLToPath(module);
    return createRequire(file)(file) as Record<string, unknown>;
  }
}

/** Rebuilds what `pack` produced (in a worker), importing each recipe's module. */
export async function unpack(value: unknown): Promise<unknown> {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return Promise.all(value.map(unpack));
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return value;
  if ('$recipe' in value) {
    const { module, name, args } = (value as Packed).$recipe;
    const mod = await load(module);
    const make = mod[name];
    if (args === null) {
      if (make === undefined) throw new Error(`unpack: ${module} has no export ${name}`);
      return make;
    }
    if (typeof make !== 'function') throw new Error(`unpack: ${module} has no exported function ${name}`);
    return make(...((await unpack(args)) as unknown[]));
  }
  const entries = await Promise.all(Object.entries(value).map(async ([k, v]) => [k, await unpack(v)] as const));
  return Object.fromEntries(entries);
}
