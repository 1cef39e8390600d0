/**
 * Point-to-point traffic between pipeline stages. Sends are asynchronous (posted and left to
 * the transport's progress thread), so a rank never blocks on a send: the "buffered sends" the
 * schedule validator assumes. The shm transport matches messages per (sender, receiver) pair in
 * posting order and has no tags, so receives are posted in the order the peer sends — known in
 * advance, since every rank holds the whole lowered schedule — whatever order this rank's own
 * list consumes them in. An activation travels as a small shape header then its data; a
 * gradient's shape is that of the activation this rank sent earlier.
 */
import type { ProcessGroup } from '../dist/process_group.ts';
import type { Work } from '../dist/work.ts';
import { tensor } from '../ops/create.ts';
import { DTYPES, type DType } from '../tensor/dtype.ts';
import type { Device } from '../tensor/storage.ts';
import { Tensor } from '../tensor/tensor.ts';
import type { Schedule } from './schedule/action.ts';

const META = 10; // dtype, ndim, up to 8 dims

interface Msg {
  kind: 'F' | 'B';
  /** The receiving stage. */
  stage: number;
  mb: number;
}

interface Posted {
  data: Tensor;
  work: Work;
}

interface Inbound {
  expected: Msg[];
  next: number;
  meta: { t: Tensor; work: Work } | null;
}

const msgKey = (kind: string, stage: number, mb: number): string => `${kind}${stage}:${mb}`;

export class PipeP2P {
  private readonly inbound = new Map<number, Inbound>();
  private readonly posted = new Map<string, Posted>();
  private readonly sentShapes = new Map<string, { shape: number[]; dtype: DType }>();
  private sends: Work[] = [];

  /** `schedule` is lowered; `me` is this process's pipeline rank; received tensors land on `device` (the stages'). */
  constructor(
    private readonly group: ProcessGroup,
    schedule: Schedule,
    me: number,
    private readonly device: Device = 'cpu',
  ) {
    schedule.actions.forEach((row, peer) => {
      if (peer === me) return;
      const expected: Msg[] = [];
      for (const a of row) {
        if (a.peer !== me) continue;
        if (a.kind === 'SEND_F') expected.push({ kind: 'F', stage: a.stage + 1, mb: a.microbatch });
        if (a.kind === 'SEND_B') expected.push({ kind: 'B', stage: a.stage - 1, mb: a.microbatch });
      }
      if (expected.length) this.inbound.set(peer, { expected, next: 0, meta: null });
    });
  }

  /** Sends stage `stage`'s output for micro-batch `mb` (header, then data). */
  sendActivation(t: Tensor, stage: number, mb: number, peer: number): void {
    if (t.ndim > META - 2) throw new Error(`pipeline: a stage output has ${t.ndim} dims; at most ${META - 2} can be sent`);
    const head = Int32Array.from({ length: META }, (_, i) => (i === 0 ? DTYPES.indexOf(t.dtype) : i === 1 ? t.ndim : (t.shape[i - 2] ?? 0)));
    const meta = tensor(head, { dtype: 'i32', shape: [META], tag: 'comm' });
    this.sentShapes.set(`${stage}:${mb}`, { shape: [...t.shape], dtype: t.dtype });
    this.post(meta, peer);
    meta.dispose();
    this.post(t, peer);
  }

  /** Sends the gradient of stage `stage`'s input for micro-batch `mb` to the previous stage. */
  sendGrad(t: Tensor, peer: number): void {
    this.post(t, peer);
  }

  /** Waits for the activation (kind F) or gradient (kind B) that `stage` receives for `mb` from `peer`. */
  recv(kind: 'F' | 'B', stage: number, mb: number, peer: number): Tensor {
    const key = msgKey(kind, stage, mb);
    const box = this.inbound.get(peer);
    if (!box) throw new Error(`pipeline: rank ${this.group.rank} expects nothing from rank ${peer}, but ${kind === 'F' ? 'RECV_F' : 'RECV_B'} ${stage}:${mb} waits for it`);
    while (!this.posted.has(key)) {
      if (box.next >= box.expected.length) throw new Error(`pipeline: rank ${peer} never sends ${key} to rank ${this.group.rank}`);
      this.postNext(peer, box, true);
    }
    const p = this.posted.get(key) as Posted;
    this.posted.delete(key);
    p.work.wait();
    return p.data;
  }

  /** Posts the receives that can be posted without waiting (at most `ahead` unconsumed per peer). */
  progress(ahead = 2): void {
    for (const [peer, box] of this.inbound) {
      let open = 0;
      for (let i = 0; i < box.next; i++) if (this.posted.has(msgKey(box.expected[i].kind, box.expected[i].stage, box.expected[i].mb))) open++;
      while (open < ahead && box.next < box.expected.length && this.postNext(peer, box, false)) open++;
    }
    this.sends = this.sends.filter((w) => !w.isCompleted());
  }

  /** Waits for every send; the receive cursors go back to the start for the next batch. */
  finish(): void {
    for (const w of this.sends) w.wait();
    this.sends = [];
    for (const [peer, box] of this.inbound) {
      if (box.next !== box.expected.length || box.meta) throw new Error(`pipeline: rank ${this.group.rank} did not receive everything rank ${peer} sent`);
      box.next = 0;
    }
    if (this.posted.size) throw new Error(`pipeline: received but never used: ${[...this.posted.keys()].join(', ')}`);
    this.sentShapes.clear();
  }

  private post(t: Tensor, peer: number): void {
    const dense = t.isContiguous ? t : t.contiguous();
    this.sends.push(this.group.send(dense, peer, { async: true }));
    // The Work keeps the memory alive until the peer has it.
    if (dense !== t) dense.dispose();
  }

  /** Posts the next expected message from `peer`; false when that needs a wait and `block` is off. */
  private postNext(peer: number, box: Inbound, block: boolean): boolean {
    const m = box.expected[box.next];
    let shape: number[];
    let dtype: DType;
    if (m.kind === 'F') {
      if (!box.meta) {
        const t = Tensor.empty([META], { dtype: 'i32', tag: 'comm' });
        box.meta = { t, work: this.group.recv(t, peer, { async: true }) };
      }
      if (!block && !box.meta.work.isCompleted()) return false;
      box.meta.work.wait();
      const head = box.meta.t.toArray() as Int32Array;
      box.meta.t.dispose();
      box.meta = null;
      dtype = DTYPES[head[0]];
      shape = Array.from(head.subarray(2, 2 + head[1]));
    } else {
      const sent = this.sentShapes.get(`${m.stage}:${m.mb}`);
      if (!sent) {
        if (!block) return false;
        throw new Error(`pipeline: a gradient for stage ${m.stage} micro-batch ${m.mb} arrives before this rank sent that activation`);
      }
      ({ shape, dtype } = sent);
    }
    // Headers stay on the host (read at once); data goes where the stage computes.
    const data = Tensor.empty(shape, { dtype, tag: 'activation', device: this.device });
    this.posted.set(msgKey(m.kind, m.stage, m.mb), { data, work: this.group.recv(data, peer, { async: true }) });
    box.next++;
    return true;
  }
}
