/**
 * The garbage-collection safety net (tensor.ts): an unscoped tensor, or one that escapes its scope,
 * that is dropped without dispose() has its storage released by the finalizer once collected.
 * Unscoped tensors join the registry in batches (at the next microtask, or every 1024 in a
 * synchronous loop), so these tests check that each way in still ends in a release, and that a
 * tensor disposed or rebound meanwhile is neither released twice nor with the wrong storage. Each
 * test follows its own storages (other suites' garbage may be collected meanwhile).
 */
import { setImmediate as tick } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { keep, noGrad, type Tensor, tidy, zeros } from '../../src/index.ts';
import { Storage } from '../../src/tensor/storage.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Collects until none of `storages` is alive (finalizers run as tasks, after a collection); returns how many still are. */
async function settle(storages: Storage[]): Promise<number> {
  const alive = () => storages.filter((s) => s.alive).length;
  for (let i = 0; i < 20 && alive() > 0; i++) {
    await tick();
    gc();
    await tick();
  }
  return alive();
}

/** The storages of tensors made by `make`, which keeps no reference to the tensors themselves. */
function storagesOf(make: () => Tensor[]): Storage[] {
  return make().map((t) => t.storage);
}

test('dropped unscoped tensors are released by the finalizer (one, and more than a batch)', async () => {
  const one = storagesOf(() => [zeros([4])]);
  assert.ok(one[0].alive);
  assert.is(await settle(one), 0, 'one dropped tensor');
  // 2500 crosses the synchronous batch twice.
  const many = storagesOf(() => Array.from({ length: 2500 }, () => zeros([1])));
  assert.is(await settle(many), 0, '2500 dropped tensors');
});

test('escaped tensors (kept, or returned from an outer tidy) are released when dropped', async () => {
  const s = storagesOf(() => [tidy(() => keep(zeros([3]))), ...tidy(() => [zeros([2]), zeros([5])])]);
  assert.is(s.filter((x) => x.alive).length, 3);
  assert.is(await settle(s), 0);
});

test('a tensor disposed before it joins the registry is released once, by dispose', async () => {
  const held = Array.from({ length: 10 }, () => zeros([2]));
  const s = held.map((t) => t.storage);
  for (const t of held) t.dispose();
  assert.is(s.filter((x) => x.alive).length, 0);
  await tick(); // the batch joins: disposed ones are skipped
  // A live one that joined stays alive while referenced, and dispose still releases it.
  const t = zeros([2]);
  await tick();
  gc();
  await tick();
  assert.ok(t.storage.alive);
  const st = t.storage;
  t.dispose();
  assert.not.ok(st.alive);
});

test('a tensor rebound before or after joining the registry is released with its new storage', async () => {
  const fresh = () => new Storage(16, 'other', 'cpu', true);
  const before = fresh();
  const old = storagesOf(() => {
    const t = noGrad(() => zeros([4]));
    const o = t.storage;
    t.rebind(before, 0); // still awaiting: joins with the new storage
    return [{ storage: o } as Tensor];
  });
  assert.not.ok(old[0].alive, 'the old storage is released at rebind');
  const after = fresh();
  await rebindJoined(after);
  assert.is(await settle([before, after]), 0, 'the finalizer releases the new storages');
});

/** A tensor that joined the registry, then rebound to `s`; unreachable once this returns. */
async function rebindJoined(s: Storage): Promise<void> {
  const t = zeros([4]);
  await tick();
  t.rebind(s, 0);
}

test.run();
