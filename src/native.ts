/**
 * The native addon, loaded once. `MESHTRAIN_ADDON` points at another build (used by CI
 * variants and by developers who build into a second folder).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

type Id = number;
/** Integer lists (shapes, strides): a JS array, or a Float64Array (one N-API read; src/ops/int_args.ts). */
type Ints = readonly number[] | Float64Array;

/** The addon's functions; argument checks happen in TypeScript before these are called. */
export interface Native {
  alloc(nbytes: number, tag: number, device: number, zero: boolean): Id;
  free(id: Id): void;
  read(id: Id, byteOffset: number, byteLength: number): ArrayBuffer;
  write(id: Id, byteOffset: number, src: ArrayBufferView): void;
  storageBytes(id: Id): number;
  /** The storage's start address and allocated capacity (tests: alignment, no overlap of live blocks). */
  storageBlock(id: Id): { address: number; capacity: number };
  memoryStats(): [tag: number, device: number, current: number, peak: number][];
  resetPeakMemoryStats(): void;
  liveStorages(): number;
  allocatorStats(): { cachedBytes: number; hits: number; misses: number; limit: number };
  emptyCache(): void;
  setCacheLimit(bytes: number): void;
  copyStrided(sd: number, sId: Id, sOff: number, sStrides: Ints, dd: number, dId: Id, dOff: number, dStrides: Ints, shape: Ints): void;
  fill(dtype: number, id: Id, off: number, n: number, value: number): void;
  /** baseId/baseOff (CUDA only): the device generator base that offset is relative to (a CUDA graph's random op). */
  random(kind: number, dtype: number, id: Id, off: number, n: number, seed: number, offset: number, start: number, a: number, b: number, baseId?: Id, baseOff?: number): void;
  binary(op: number, dtype: number, aId: Id, aOff: number, aStrides: Ints, bId: Id, bOff: number, bStrides: Ints, outId: Id, outOff: number, shape: Ints): void;
  binaryFlat(op: number, dtype: number, aId: Id, aOff: number, bId: Id, bOff: number, outId: Id, outOff: number, n: number): void;
  /** scalarId/scalarOff: the scalar is that f64 element instead (read where the kernel runs); an in-place mulScalar by exactly 1 then writes nothing. */
  unary(op: number, dtype: number, xId: Id, xOff: number, outId: Id, outOff: number, n: number, scalar: number, scalarId?: Id, scalarOff?: number): void;
  axpy(dtype: number, xId: Id, xOff: number, yId: Id, yOff: number, n: number, alpha: number): void;
  reduce(op: number, dtype: number, xId: Id, xOff: number, outId: Id, outOff: number, outer: number, r: number, inner: number, scale: number): void;
  deviceInfo(): { threads: number; onednn: string; cudaCompiled: boolean; cudaDevices: number; cudaStatus: string };
  setNumThreads(n: number): void;
  // biome-ignore lint/suspicious/noExplicitAny: kernel families add functions typed at their call sites
  [name: string]: any;
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = process.env.MESHTRAIN_ADDON ?? path.join(root, 'build', 'Release', 'meshtrain.node');

function load(): Native {
  try {
    return createRequire(import.meta.url)(addonPath) as Native;
  } catch (e) {
    throw new Error(`meshtrain: cannot load the native addon at ${addonPath} (run \`npm install\` or \`npm run build\`): ${(e as Error).message}`);
  }
}

export const native: Native = load();
