/**
 * Device-decided launches of the many-tensor optimizers (native/cuda/adam_multi.cu, sgd_multi.cu
 * with a decision, scalars_slot.h): `cuda.adamMulti` / `cuda.sgdMulti` in slot mode 1 with a device
 * f64 pair {skip, gradScale} (cuda.stepDecision's output). With {0, g} the update equals an eager
 * launch with gradScale g bit for bit (parameters, fp32/f64 masters, moments, momentum buffers):
 * Adam (AdamW and L2 decay, maximize) and SGD (momentum, Nesterov, dampening, first step, weight
 * decay, maximize, no momentum), bf16/f16/f32 parameters, f32 and f64 state, 26 tensors (two
 * launches). With skip != 0 nothing changes. A launch captured in a CUDA graph follows each
 * replay's decision. A decision with slot mode 0 or 2 is refused. Without a device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyInPlace, cudaIsAvailable, type DType, native, randn, type Tensor, tensor, zeros } from '../../src/index.ts';
import { dtypeCode } from '../../src/tensor/dtype.ts';
import { tensorBytes } from '../helpers/bits.ts';

const DEV = 'cuda:0';
const SIZES = Array.from({ length: 26 }, (_, i) => 1 + ((i * 53) % 200));
/** Gradient multipliers with no short binary form (their f32 rounding matters). */
const SCALES = [0.37 / 1024, 3.3];

type Kind = 'adam' | 'sgd';

interface State {
  params: Tensor[];
  grads: Tensor[];
  masters: (Tensor | null)[];
  /** Adam: m and v per tensor; SGD: the momentum buffer (empty without momentum). */
  state: Tensor[][];
  /** The flat buffers the tensors above are views of (few copies to compare). */
  flats: Tensor[];
}

interface Config {
  kind: Kind;
  pd: DType;
  sd: DType;
  /** Adam: decoupled (AdamW); SGD: momentum, nesterov, dampening, firstStep. */
  decoupled?: boolean;
  momentum?: number;
  nesterov?: boolean;
  dampening?: number;
  firstStep?: boolean;
  weightDecay: number;
  maximize: boolean;
}

const TOTAL = SIZES.reduce((a, n) => a + n, 0);

/** Views of `flat` in SIZES' lengths (odd offsets: each tensor starts where the last ends). */
function views(flat: Tensor): Tensor[] {
  let off = 0;
  return SIZES.map((n) => {
    off += n;
    return flat.narrow(0, off - n, n);
  });
}

/** The state over flat buffers: params, then masters (16-bit params), then the optimizer state. */
function overFlats(c: Config, flats: Tensor[], grads: Tensor[]): State {
  const [p, ...rest] = flats;
  const masters = c.pd === 'f32' ? SIZES.map(() => null) : views(rest.shift() as Tensor);
  const per = rest.map(views);
  return { params: views(p), grads, masters, state: SIZES.map((_, i) => per.map((v) => v[i])), flats };
}

function makeState(c: Config): State {
  const p = randn([TOTAL], { device: DEV }).to(c.pd);
  const flats = [p];
  if (c.pd !== 'f32') flats.push(p.to(c.sd));
  if (c.kind === 'adam') {
    const r = randn([TOTAL], { device: DEV });
    flats.push(randn([TOTAL], { device: DEV }).mul(0.1).to(c.sd), r.mul(r).mul(0.01).to(c.sd));
  } else if (c.momentum) flats.push(randn([TOTAL], { device: DEV }).to(c.sd));
  return overFlats(c, flats, views(randn([TOTAL], { device: DEV }).to(c.pd)));
}

function cloneState(c: Config, s: State): State {
  return overFlats(
    c,
    s.flats.map((t) => t.clone()),
    s.grads,
  );
}

/** Every tensor the update writes, as bytes. */
function snapshot(s: State): Buffer[] {
  return s.flats.map(tensorBytes);
}

function refs(c: Config, s: State): number[] {
  return s.params.flatMap((p, i) => {
    const g = s.grads[i];
    const m = s.masters[i];
    const master = m ? [m.id, m.offset] : [-1, 0];
    if (c.kind === 'adam') {
      const [mt, vt] = s.state[i];
      return [p.id, p.offset, g.id, g.offset, mt.id, mt.offset, vt.id, vt.offset, ...master, p.numel];
    }
    const buf = s.state[i][0];
    return [p.id, p.offset, g.id, g.offset, ...(buf ? [buf.id, buf.offset] : [-1, 0]), ...master, p.numel];
  });
}

/** One launch over `s`: eager (`slot` omitted) with gradScale, or with the slot args (mode, decision). */
function launch(c: Config, s: State, gradScale: number, slot: number[] = []): void {
  const d = [dtypeCode(c.pd), dtypeCode(c.pd), dtypeCode(c.sd), refs(c, s)];
  if (c.kind === 'adam') native.cuda.adamMulti(...d, 1e-2, 0.9, 0.999, 1e-8, c.weightDecay, 3, c.decoupled, c.maximize, gradScale, ...slot);
  else native.cuda.sgdMulti(...d, 0.05, c.momentum ?? 0, c.dampening ?? 0, c.weightDecay, c.nesterov ?? false, c.maximize, c.firstStep ?? false, gradScale, ...slot);
}

function decision(skip: number, gradScale: number): Tensor {
  return tensor(new Float64Array([skip, gradScale, 0]), { dtype: 'f64', device: DEV });
}

/** A scalars slot written for `c` with gradScale 1 (what the host writes for a decided launch). */
function slotFor(c: Config, s: State): Tensor {
  const slot = zeros([16], { dtype: 'f64', device: DEV });
  launch(c, s, 1, [slot.id, slot.offset, 2]);
  return slot;
}

function assertSame(what: string, got: Buffer[], want: Buffer[]): void {
  assert.is(got.length, want.length);
  const i = got.findIndex((b, j) => !b.equals(want[j]));
  assert.is(i, -1, `${what}: tensor ${i} differs`);
}

function configs(): Config[] {
  const out: Config[] = [];
  for (const pd of ['f32', 'bf16', 'f16'] as DType[]) {
    for (const sd of ['f32', 'f64'] as DType[]) {
      for (const decoupled of [true, false]) for (const maximize of [false, true]) out.push({ kind: 'adam', pd, sd, decoupled, weightDecay: 0.1, maximize });
      out.push({ kind: 'sgd', pd, sd, momentum: 0.9, nesterov: true, weightDecay: 0.01, maximize: false });
      out.push({ kind: 'sgd', pd, sd, momentum: 0.9, dampening: 0.1, firstStep: true, weightDecay: 0, maximize: true });
      out.push({ kind: 'sgd', pd, sd, momentum: 0.8, dampening: 0.2, weightDecay: 0.05, maximize: true });
      out.push({ kind: 'sgd', pd, sd, weightDecay: 0.05, maximize: true });
    }
  }
  return out;
}

const name = (c: Config) =>
  `${c.kind} ${c.pd} params, ${c.sd} state${c.kind === 'adam' ? (c.decoupled ? ', AdamW' : ', L2') : c.momentum ? `, momentum ${c.momentum}${c.nesterov ? ' nesterov' : ''}${c.firstStep ? ' first step' : ''}` : ', no momentum'}${c.maximize ? ', maximize' : ''}`;

if (!cudaIsAvailable() || native.cuda?.optimDecision !== true) {
  test('device-decided optimizer launches', () => {
    console.log('SKIP test/unit/cuda_decided_optim: no usable CUDA device, or an addon without cuda.optimDecision');
  });
} else {
  test('decision {0, g}: bit for bit an eager launch with gradScale g; {1, g}: nothing changes', () => {
    for (const c of configs()) {
      const eager = makeState(c);
      const decided = cloneState(c, eager);
      const slot = slotFor(c, decided);
      for (const g of SCALES) {
        launch(c, eager, g);
        const dec = decision(0, g);
        launch(c, decided, 1, [slot.id, slot.offset, 1, dec.id, dec.offset]);
        assertSame(`${name(c)}, gradScale ${g}`, snapshot(decided), snapshot(eager));
        const before = snapshot(decided);
        const skip = decision(1, g);
        launch(c, decided, 1, [slot.id, slot.offset, 1, skip.id, skip.offset]);
        assertSame(`${name(c)}, skipped`, snapshot(decided), before);
        for (const t of [dec, skip]) t.dispose();
      }
      slot.dispose();
    }
  });

  test('a captured decided launch follows each replay decision', () => {
    for (const c of configs().filter((x) => x.sd === 'f32' && x.pd === 'bf16' && (x.kind === 'adam' ? x.decoupled : x.nesterov))) {
      const eager = makeState(c);
      const decided = cloneState(c, eager);
      const slot = slotFor(c, decided);
      const dec = decision(1, 0);
      const id = native.cudaGraphBegin(0);
      try {
        launch(c, decided, 1, [slot.id, slot.offset, 1, dec.id, dec.offset]);
      } catch (e) {
        native.cudaGraphAbort(id);
        throw e;
      }
      native.cudaGraphEnd(id);
      assertSame(`${name(c)}: the capture runs nothing`, snapshot(decided), snapshot(eager));
      for (const [skip, g] of [
        [0, SCALES[0]],
        [1, SCALES[1]],
        [0, SCALES[1]],
      ]) {
        copyInPlace(dec, tensor(new Float64Array([skip, g, 0]), { dtype: 'f64' }));
        native.cudaGraphReplay(id);
        if (skip === 0) launch(c, eager, g);
        assertSame(`${name(c)}: replay with {${skip}, ${g}}`, snapshot(decided), snapshot(eager));
      }
      native.cudaGraphRelease(id);
      for (const t of [slot, dec]) t.dispose();
    }
  });

  test('a decision needs slot mode 1, two f64 on the same device', () => {
    for (const kind of ['adam', 'sgd'] as Kind[]) {
      const c: Config = { kind, pd: 'f32', sd: 'f32', momentum: 0.9, decoupled: true, weightDecay: 0, maximize: false };
      const s = makeState(c);
      const slot = slotFor(c, s);
      const dec = decision(0, 1);
      const op = kind === 'adam' ? 'adamMulti' : 'sgdMulti';
      for (const mode of [0, 2]) {
        assert.throws(() => launch(c, s, 1, [slot.id, slot.offset, mode, dec.id, dec.offset]), new RegExp(`${op}: a device decision needs slot mode 1 \\(read the slot\\), got mode ${mode}`));
      }
      assert.throws(() => launch(c, s, 1, [slot.id, slot.offset, 1, dec.id, dec.offset + 2]), new RegExp(`${op}: the decision's f64 \\[2, 4\\) must lie in storage \\d+ of 3 f64`));
      const host = zeros([2], { dtype: 'f64' });
      assert.throws(() => launch(c, s, 1, [slot.id, slot.offset, 1, host.id, host.offset]), new RegExp(`${op}: storage \\d+ is not on a CUDA device`));
      for (const t of [slot, dec, host]) t.dispose();
    }
  });
}

test.run();
