/**
 * Plain state (client state, optimizer and scheduler state dicts) as JSON, with typed arrays kept
 * exact: they are written as base64 of their bytes and come back as the same typed array class.
 */

const TYPED = {
  Float32Array,
  Float64Array,
  Int32Array,
  BigInt64Array,
  Uint8Array,
  Uint16Array,
  Int16Array,
  Uint32Array,
  Int8Array,
} as const;
type TypedName = keyof typeof TYPED;
const MARK = '__typedArray';

export function encodePlain(value: unknown): unknown {
  if (value === undefined) return null;
  return JSON.parse(
    JSON.stringify(value, (_key, v) => {
      if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
        const name = v.constructor.name;
        if (!(name in TYPED)) throw new Error(`checkpoint state: cannot store a ${name}`);
        return { [MARK]: name, base64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
      }
      if (typeof v === 'bigint') throw new Error('checkpoint state: cannot store a bigint outside a BigInt64Array');
      if (typeof v === 'number' && !Number.isFinite(v)) return { [MARK]: 'number', value: String(v) };
      return v;
    }),
  );
}

export function decodePlain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(decodePlain);
  if (value === null || typeof value !== 'object') return value;
  const o = value as Record<string, unknown>;
  if (typeof o[MARK] === 'string') {
    if (o[MARK] === 'number') return Number(o.value);
    const Ctor = TYPED[o[MARK] as TypedName];
    if (!Ctor || typeof o.base64 !== 'string') throw new Error(`checkpoint state: bad typed array record ${JSON.stringify(o[MARK])}`);
    const bytes = Buffer.from(o.base64, 'base64');
    const copy = new Uint8Array(bytes.byteLength);
    copy.set(bytes);
    return new Ctor(copy.buffer, 0, bytes.byteLength / Ctor.BYTES_PER_ELEMENT);
  }
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, decodePlain(v)]));
}
