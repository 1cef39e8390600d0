/**
 * Rendezvous: a TCP key-value store. The launcher (or rank 0 when there is none) serves it;
 * every rank is a client. Backends exchange their set-up through it (segment names, split
 * colors); nothing on the hot path touches it.
 *
 * Wire format, both directions: [u32 LE payload length][payload]. A request payload is
 * [u8 op][u32 request id][fields]; a response is [u32 request id][u8 status][fields]; each field
 * is [u32 length][bytes]. Values are binary-safe; keys are UTF-8. Waits time out on the server,
 * which answers with the keys still missing.
 */
import net from 'node:net';

const Op = { set: 1, get: 2, wait: 3, add: 4, compareSet: 5, delete: 6, check: 7, numKeys: 8 } as const;
const Status = { ok: 0, timeout: 1, error: 2 } as const;

export type StoreValue = string | Uint8Array;

function toBuf(v: StoreValue): Buffer {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function encode(head: Buffer, fields: Buffer[]): Buffer {
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

function decodeFields(buf: Buffer, start: number): Buffer[] {
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
class Framer {
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

interface Waiter {
  keys: string[];
  done: (missing: string[] | null) => void;
}

/**
 * The server side. `listen()` resolves with the bound port (pass port 0 for a free one).
 * @example
 * const server = await StoreServer.listen(29500);
 * // ... ranks connect with StoreClient.connect('127.0.0.1', 29500)
 * await server.close();
 */
export class StoreServer {
  private readonly data = new Map<string, Buffer>();
  private readonly waiters = new Set<Waiter>();
  private readonly sockets = new Set<net.Socket>();
  private unrefd = false;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static listen(port: number, host = '0.0.0.0'): Promise<StoreServer> {
    return new Promise((resolve, reject) => {
      const server = net.createServer();
      server.once('error', (e: NodeJS.ErrnoException) => {
        const hint = e.code === 'EADDRINUSE' ? ' (the port is in use: pass another --master_port, or 0 for a free one)' : '';
        reject(new Error(`store: cannot listen on ${host}:${port}: ${e.message}${hint}`));
      });
      server.listen(port, host, () => {
        const s = new StoreServer(server, (server.address() as net.AddressInfo).port);
        server.on('connection', (sock) => s.accept(sock));
        resolve(s);
      });
    });
  }

  /** Lets the process exit while the server is still open (rank 0 serving its peers in-process). */
  unref(): void {
    this.unrefd = true;
    this.server.unref();
    for (const s of this.sockets) s.unref();
  }

  /** Stops listening and drops every client; pending waits are answered with an error. */
  close(): Promise<void> {
    for (const w of this.waiters) w.done(w.keys);
    this.waiters.clear();
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(sock: net.Socket): void {
    sock.setNoDelay(true);
    if (this.unrefd) sock.unref();
    this.sockets.add(sock);
    const mine = new Set<Waiter>();
    const framer = new Framer((frame) => this.handle(sock, mine, frame));
    sock.on('data', (c) => framer.push(c));
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      this.sockets.delete(sock);
      for (const w of mine) this.waiters.delete(w);
    });
  }

  private reply(sock: net.Socket, id: number, status: number, fields: Buffer[]): void {
    if (sock.destroyed) return;
    const head = Buffer.allocUnsafe(5);
    head.writeUInt32LE(id, 0);
    head.writeUInt8(status, 4);
    sock.write(encode(head, fields));
  }

  private handle(sock: net.Socket, mine: Set<Waiter>, frame: Buffer): void {
    const op = frame.readUInt8(0);
    const id = frame.readUInt32LE(1);
    const f = decodeFields(frame, 5);
    const key = (i: number) => f[i].toString('utf8');
    const ok = (...fields: Buffer[]) => this.reply(sock, id, Status.ok, fields);
    try {
      switch (op) {
        case Op.set:
          this.put(key(0), Buffer.from(f[1]));
          ok();
          return;
        case Op.get:
        case Op.wait: {
          const timeoutMs = Number(key(0));
          const keys = f.slice(1).map((b) => b.toString('utf8'));
          const answer = (missing: string[] | null) => {
            if (missing) this.reply(sock, id, Status.timeout, missing.map((k) => Buffer.from(k)));
            else if (op === Op.get) ok(this.data.get(keys[0]) as Buffer);
            else ok();
          };
          const missing = keys.filter((k) => !this.data.has(k));
          if (missing.length === 0) {
            answer(null);
            return;
          }
          let timer: NodeJS.Timeout | undefined;
          const w: Waiter = {
            keys,
            done: (m) => {
              clearTimeout(timer);
              this.waiters.delete(w);
              mine.delete(w);
              answer(m);
            },
          };
          timer = setTimeout(() => w.done(keys.filter((k) => !this.data.has(k))), timeoutMs);
          this.waiters.add(w);
          mine.add(w);
          return;
        }
        case Op.add: {
          const prev = this.data.get(key(0));
          const next = BigInt(prev ? prev.toString('utf8') : '0') + BigInt(key(1));
          const out = Buffer.from(next.toString());
          this.put(key(0), out);
          ok(out);
          return;
        }
        case Op.compareSet: {
          const cur = this.data.get(key(0));
          const matches = cur === undefined ? f[1].length === 0 : cur.equals(f[1]);
          if (matches) this.put(key(0), Buffer.from(f[2]));
          const now = this.data.get(key(0));
          ok(Buffer.from([matches ? 1 : 0]), ...(now ? [now] : []));
          return;
        }
        case Op.delete:
          ok(Buffer.from([this.data.delete(key(0)) ? 1 : 0]));
          return;
        case Op.check:
          ok(Buffer.from([f.every((b) => this.data.has(b.toString('utf8'))) ? 1 : 0]));
          return;
        case Op.numKeys:
          ok(Buffer.from(String(this.data.size)));
          return;
        default:
          throw new Error(`unknown op ${op}`);
      }
    } catch (e) {
      this.reply(sock, id, Status.error, [Buffer.from((e as Error).message)]);
    }
  }

  private put(key: string, value: Buffer): void {
    this.data.set(key, value);
    for (const w of [...this.waiters]) if (w.keys.every((k) => this.data.has(k))) w.done(null);
  }
}

interface Pending {
  what: string;
  resolve: (r: { status: number; fields: Buffer[] }) => void;
  reject: (e: Error) => void;
}

export interface StoreConnectOptions {
  /** How long to keep retrying the connection (ms). */
  connectTimeoutMs?: number;
  /** Default timeout of get() and wait() (ms). */
  timeoutMs?: number;
}

/**
 * A client. Every call is a Promise; many may be in flight on one connection.
 * @example
 * const store = await StoreClient.connect('127.0.0.1', 29500, { timeoutMs: 30_000 });
 * await store.set('rank0/addr', 'x');
 * const v = await store.get('rank0/addr');        // waits until the key exists
 */
export class StoreClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedWith: Error | null = null;
  readonly timeoutMs: number;

  private constructor(
    private readonly sock: net.Socket,
    readonly host: string,
    readonly port: number,
    timeoutMs: number,
  ) {
    this.timeoutMs = timeoutMs;
    sock.unref();   // an idle store connection must not keep the process alive
    const framer = new Framer((frame) => this.onFrame(frame));
    sock.on('data', (c) => framer.push(c));
    sock.on('error', () => {});
    sock.on('close', () => this.fail(`connection to the store at ${this.address} closed`));
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** Connects, retrying refused or unreachable connections until `connectTimeoutMs` has passed. */
  static async connect(host: string, port: number, opts: StoreConnectOptions = {}): Promise<StoreClient> {
    const deadline = Date.now() + (opts.connectTimeoutMs ?? 60_000);
    const start = Date.now();
    let last = '';
    for (;;) {
      try {
        const sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect({ host, port });
          s.once('connect', () => {
            s.removeAllListeners('error');
            resolve(s);
          });
          s.once('error', reject);
        });
        sock.setNoDelay(true);
        return new StoreClient(sock, host, port, opts.timeoutMs ?? 300_000);
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() >= deadline) {
        throw new Error(
          `store: cannot reach the rendezvous store at ${host}:${port} after ${Date.now() - start} ms ` +
            `(last error: ${last}); is the launcher (or rank 0) running, and are MASTER_ADDR/MASTER_PORT right?`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Closes the connection; calls in flight are rejected. */
  close(): void {
    this.fail(`the store client for ${this.address} was closed`);
    this.sock.destroy();
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  private fail(msg: string): void {
    if (this.closedWith) return;
    this.closedWith = new Error(msg);
    for (const p of this.pending.values()) p.reject(new Error(`store: ${p.what} failed: ${msg}`));
    this.pending.clear();
  }

  private onFrame(frame: Buffer): void {
    const id = frame.readUInt32LE(0);
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.sock.unref();
    p.resolve({ status: frame.readUInt8(4), fields: decodeFields(frame, 5) });
  }

  private request(op: number, what: string, fields: Buffer[], clientTimeoutMs?: number): Promise<{ status: number; fields: Buffer[] }> {
    if (this.closedWith) return Promise.reject(new Error(`store: ${what} failed: ${this.closedWith.message}`));
    const id = this.nextId++ >>> 0;
    const head = Buffer.allocUnsafe(5);
    head.writeUInt8(op, 0);
    head.writeUInt32LE(id, 1);
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      // The server answers timeouts itself; this guard only covers a server that stopped answering.
      if (clientTimeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.pending.delete(id);
          if (this.pending.size === 0) this.sock.unref();
          reject(new Error(`store: ${what} at ${this.address} got no answer within ${clientTimeoutMs} ms`));
        }, clientTimeoutMs);
        timer.unref();
      }
      this.pending.set(id, {
        what,
        resolve: (r) => {
          clearTimeout(timer);
          if (r.status === Status.error) reject(new Error(`store: ${what} failed: ${r.fields[0]?.toString()}`));
          else resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.sock.ref();
      this.sock.write(encode(head, fields));
    });
  }

  async set(key: string, value: StoreValue): Promise<void> {
    await this.request(Op.set, `set(${key})`, [Buffer.from(key), toBuf(value)], 60_000);
  }

  /** The value of `key`, waiting up to `timeoutMs` for it to be set. */
  async get(key: string, timeoutMs = this.timeoutMs): Promise<Buffer> {
    const start = Date.now();
    const r = await this.request(Op.get, `get(${key})`, [Buffer.from(String(timeoutMs)), Buffer.from(key)], timeoutMs + 10_000);
    if (r.status === Status.timeout) throw this.timeoutError('get', [key], [key], start);
    return r.fields[0];
  }

  /** `get` decoded as UTF-8. */
  async getString(key: string, timeoutMs = this.timeoutMs): Promise<string> {
    return (await this.get(key, timeoutMs)).toString('utf8');
  }

  /** Resolves when every key exists; rejects after `timeoutMs` naming the keys still missing. */
  async wait(keys: string[], timeoutMs = this.timeoutMs): Promise<void> {
    const start = Date.now();
    const r = await this.request(Op.wait, `wait(${keys.join(', ')})`, [Buffer.from(String(timeoutMs)), ...keys.map((k) => Buffer.from(k))], timeoutMs + 10_000);
    if (r.status === Status.timeout) {
      throw this.timeoutError('wait', keys, r.fields.map((b) => b.toString('utf8')), start);
    }
  }

  private timeoutError(call: string, keys: string[], missing: string[], start: number): Error {
    const list = (ks: string[]) => (ks.length > 8 ? `${ks.slice(0, 8).join(', ')}, ... (${ks.length} keys)` : ks.join(', '));
    return new Error(
      `store.${call}: timed out after ${Date.now() - start} ms waiting for [${list(keys)}] at ${this.address}` +
        (keys.length > 1 ? ` (still missing: ${list(missing)})` : ''),
    );
  }

  /** Adds `delta` to the integer stored at `key` (0 when absent) and returns the new value. */
  async add(key: string, delta: number): Promise<number> {
    const r = await this.request(Op.add, `add(${key})`, [Buffer.from(key), Buffer.from(String(Math.trunc(delta)))], 60_000);
    return Number(r.fields[0].toString());
  }

  /**
   * Sets `key` to `desired` when its value equals `expected` (an empty `expected` matches an
   * absent key). Returns whether it was set and the value stored now.
   */
  async compareSet(key: string, expected: StoreValue, desired: StoreValue): Promise<{ swapped: boolean; value: Buffer | undefined }> {
    const r = await this.request(Op.compareSet, `compareSet(${key})`, [Buffer.from(key), toBuf(expected), toBuf(desired)], 60_000);
    return { swapped: r.fields[0][0] === 1, value: r.fields[1] };
  }

  /** Removes `key`; resolves to whether it existed. */
  async delete(key: string): Promise<boolean> {
    const r = await this.request(Op.delete, `delete(${key})`, [Buffer.from(key)], 60_000);
    return r.fields[0][0] === 1;
  }

  /** Whether every key exists, without waiting. */
  async check(keys: string[]): Promise<boolean> {
    const r = await this.request(Op.check, 'check', keys.map((k) => Buffer.from(k)), 60_000);
    return r.fields[0][0] === 1;
  }

  async numKeys(): Promise<number> {
    const r = await this.request(Op.numKeys, 'numKeys', [], 60_000);
    return Number(r.fields[0].toString());
  }

  /**
   * Every one of `n` participants calls this with the same `name` (unique per barrier);
   * it resolves once all have arrived.
   */
  async barrier(name: string, n: number, timeoutMs = this.timeoutMs): Promise<void> {
    const count = await this.add(`${name}/count`, 1);
    if (count === n) await this.set(`${name}/done`, '1');
    try {
      await this.wait([`${name}/done`], timeoutMs);
    } catch (e) {
      const arrived = Number((await this.get(`${name}/count`, 1000).catch(() => Buffer.from('?'))).toString());
      throw new Error(`${(e as Error).message}: ${arrived} of ${n} participants arrived at barrier '${name}'`);
    }
  }
}
