/**
 * Scopes free every tensor created inside them that is not returned or kept, so a training
 * step's intermediates are released the moment the step ends.
 */

export interface Scoped {
  readonly disposed: boolean;
  kept: boolean;
  dispose(): void;
  /** Called when the tensor outlives every scope: it needs the garbage-collection safety net. */
  escaped(): void;
}

const stack: Scoped[][] = [];
/** The innermost scope (the stack's last), or null: read by every new tensor. */
let top: Scoped[] | null = null;

/** Called by every new tensor; false when no scope will free it. */
export function track(t: Scoped): boolean {
  if (top === null) return false;
  top.push(t);
  return true;
}

function popScope(): void {
  stack.pop();
  top = stack.length > 0 ? stack[stack.length - 1] : null;
}

function collect(value: unknown, into: Set<unknown>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 4) return;
  if ('dispose' in value && 'kept' in value) {
    into.add(value);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collect(v, into, depth + 1);
  else if (value instanceof Map) for (const v of value.values()) collect(v, into, depth + 1);
  else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, into, depth + 1);
  }
}

/**
 * Runs `fn` and disposes every tensor it created except those in its result (a tensor, or
 * arrays/plain objects/Maps of tensors) and those marked with `keep()`.
 * @example
 * const loss = tidy(() => crossEntropy(model.forward(x), y)); // intermediates freed
 */
export function tidy<T>(fn: () => T): T {
  const scope: Scoped[] = [];
  stack.push(scope);
  top = scope;
  let result: T;
  try {
    result = fn();
  } catch (e) {
    popScope();
    for (const t of scope) {
      if (t.disposed) continue;
      if (t.kept) t.escaped();
      else t.dispose();
    }
    throw e;
  }
  popScope();
  if (result instanceof Promise) {
    throw new Error('tidy: the function must be synchronous (it returned a Promise)');
  }
  // A short flat array (a backward node's gradients) is its own membership list: no Set per scope.
  const flat = Array.isArray(result) && result.length <= 8 && result.every(isFlatItem);
  let returned: Set<unknown> | null = null;
  if (!flat) {
    returned = new Set<unknown>();
    collect(result, returned);
  }
  const parent = top;
  for (const t of scope) {
    if (t.disposed) continue;
    const isReturned = returned === null ? (result as unknown[]).includes(t) : returned.has(t);
    if (isReturned && parent) parent.push(t);
    else if (isReturned || t.kept) t.escaped();
    else t.dispose();
  }
  return result;
}

/** A value `collect` would not descend into: a primitive, null, or a scoped tensor. */
function isFlatItem(v: unknown): boolean {
  return v === null || typeof v !== 'object' || ('dispose' in v && 'kept' in v);
}

/** Marks a tensor as long-lived: no scope disposes it; its owner must. Returns it. */
export function keep<T extends Scoped>(t: T): T {
  t.kept = true;
  return t;
}
