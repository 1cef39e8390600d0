/**
 * The rendezvous store's server: the launcher runs it on node 0 (or rank 0 runs it in-process).
 * Waits time out here, on the server, which answers with the keys still missing.
 */
import net from 'node:net';
import { decodeFields, encode, Framer, Op, Status } from './store_wire.ts';

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
