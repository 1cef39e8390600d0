/**
 * The store's wire format, both directions: [u32 LE payload length][payload]. A request payload
 * is [u8 op][u32 request id][fields]; a response is [u32 request id][u8 status][fields]; each
 * field is [u32 length][bytes]. Values are binary-safe; keys are UTF-8.
 */
export const Op = { set: 1, get: 2, wait: 3, add: 4, compareSet: 5, delete: 6, check: 7, numKeys: 8 } as const;
export const Status = { ok: 0, timeout: 1, error: 2 } as const;

export type StoreValue = string | Uint8Array;

export function toBuf(v: StoreValue): Buffer {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

export function encode(head: Buffer, fields: Buffer[]): Buffer {
  let n = head.length;
  for (const f of fields) n += 4 + f.length;
  const out = Buffer.allocUnsafe(4 + n);
  out.writeUInt32LE(n, 0);
  head.copy(out, 4);
  let o = 4 + head.length;
  for (const f of fields) {
    out.writeUInt32LE(f.length, o);
    f.copy(out, o + 4);
    o += 4 + f.length;
  }
  return out;
}

export function decodeFields(buf: Buffer, start: number): Buffer[] {
  const fields: Buffer[] = [];
  let o = start;
  while (o < buf.length) {
    const len = buf.readUInt32LE(o);
    fields.push(buf.subarray(o + 4, o + 4 + len));
    o += 4 + len;
  }
  return fields;
}

/** Splits a byte stream into length-prefixed frames. */
export class Framer {
  private pending: Buffer[] = [];
  private size = 0;

  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.pending.push(chunk);
    this.size += chunk.length;
    if (this.size < 4) return;
    let buf = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
    let o = 0;
    while (buf.length - o >= 4) {
      const len = buf.readUInt32LE(o);
      if (buf.length - o - 4 < len) break;
      this.onFrame(buf.subarray(o + 4, o + 4 + len));
      o += 4 + len;
    }
    buf = buf.subarray(o);
    this.pending = buf.length ? [buf] : [];
    this.size = buf.length;
  }
}
