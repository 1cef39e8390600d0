/**
 * Rendezvous: a TCP key-value store. The launcher (or rank 0 when there is none) serves it
 * (store_server.ts); every rank is a client. Backends exchange their set-up through it (segment
 * names, split colors); nothing on the hot path touches it.
 */
import net from 'node:net';
import { decodeFields, encode, Framer, Op, Status, type StoreValue, toBuf } from './store_wire.ts';

export { StoreServer } from './store_server.ts';
export type { StoreValue } from './store_wire.ts';

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
