/**
 * MESHTRAIN_CUDNN_BENCHMARK=1 (native/cuda/conv_cudnn_search.cc): each conv2d plan's first call
 * times cuDNN's algorithms (cudnnFind*AlgorithmEx) and keeps the fastest accepted one. Plans are
 * per (device, pass, dtype, shape, layout) and the switches are read when a plan is made, so each
 * case below uses its own shape. Checked: forward, input and weight gradients within the conv
 * tolerances of the CPU (f32 2e-5, bf16 1e-2, relative to the largest CPU value), and bit for bit
 * the flag-off result on another device when the search kept the heuristic's algorithm; one Find
 * per pass and plan, none on later calls; pre-filled .grad accumulated, not overwritten (the
 * emulated Find fills the output it is given with NaN); deterministic algorithms only unless
 * MESHTRAIN_CUDNN_DETERMINISTIC=0; no search for a plan first made inside a CUDA graph capture.
 * The emulated cuDNN's fake times make the choices known (f32: 3 by search where the heuristic
 * takes 1; bf16: 2 both ways; non-deterministic allowed: 0); on a GPU they are printed.
 * Without a usable device the suite prints one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type CensusEntry, captureCudaGraph, conv2d, cudaCensus, cudaDeviceCount, cudaDeviceProperties, cudaIsAvailable, cudaLibraries,
  type Device, type DType, mul, native, noGrad, randn, sum, type Tensor, tidy,
} from '../../src/index.ts';
import { maxRelErr } from '../helpers/cuda_parity.ts';
import { withEnv } from '../helpers/env.ts';

type Result = { y: number[]; gx: number[]; gw: number[]; entries: CensusEntry[] };

const flat = (t: Tensor): number[] => t.to('cpu').to('f64').contiguous().toList();


/** y = conv2d(x, w, 3x3 pad 1) and the gradients of sum(y * r), from CPU inputs, on `device`; `pre` pre-fills both .grad. */
function run(device: Device, ins: Tensor[], pre?: Tensor[]): Result {
  return tidy(() => {
    const [x, w, r] = ins.map((t) => noGrad(() => t.to(device)));
    x.requiresGrad_(true);
    w.requiresGrad_(true);
    if (pre) [x.grad, w.grad] = pre.map((t) => noGrad(() => t.to(device).contiguous()));
    const { result, entries } = cudaCensus(() => {
      const y = conv2d(x, w, null, { stride: 1, padding: 1 });
      sum(mul(y, r)).backward();
      return flat(y);
    });
    return { y: result, gx: flat(x.grad as Tensor), gw: flat(w.grad as Tensor), entries };
  });
}

function inputs(dtype: DType, [N, C, H, W]: number[], O: number): Tensor[] {
  return [randn([N, C, H, W], { dtype }), randn([O, C, 3, 3], { dtype, std: 0.3 }), randn([N, O, H, W], { dtype })];
}

/** The census's plan notes: pass -> [algorithm, how it was chosen, heuristic's algorithm]. */
function plans(entries: CensusEntry[]): Map<string, { algo: number; by: string; heuristic: number; count: number }> {
  const out = new Map();
  for (const e of entries) {
    const m = e.kind === 'note' && /^cudnn plan (\S+) \S+: algo (\d+) by (search|heuristic)(?: \(heuristic (\d+)\))?/.exec(e.name);
    if (m) out.set(m[1], { algo: +m[2], by: m[3], heuristic: m[4] === undefined ? +m[2] : +m[4], count: e.count });
  }
  return out;
}
const finds = (entries: CensusEntry[]) => entries.filter((e) => e.kind === 'library' && e.name.startsWith('cudnnFind'));
const PASSES = ['conv2dForward', 'conv2dBackwardData', 'conv2dBackwardWeights'];
const TOLS: Record<string, number> = { f32: 2e-5, bf16: 1e-2 };

if (!cudaIsAvailable() || !(cudaLibraries() as unknown as Record<string, { found: boolean }>).cudnn.found) {
  test('cuDNN algorithm search', () => {
    const info = native.deviceInfo();
    const why = !cudaIsAvailable() ? (info.cudaCompiled ? info.cudaStatus : 'built without CUDA') : 'no libcudnn';
    console.log(`SKIP test/unit/cuda_cudnn_benchmark: no usable CUDA device with cuDNN (${why})`);
  });
} else {
  const emulated = cudaDeviceProperties('cuda:0').name.includes('emulated');
  const last: Device = cudaDeviceCount() > 1 ? 'cuda:1' : 'cuda:0';
  const ON = { MESHTRAIN_CUDNN_BENCHMARK: '1', MESHTRAIN_CUDNN_DETERMINISTIC: undefined };
  const OFF = { MESHTRAIN_CUDNN_BENCHMARK: undefined };

  for (const [dtype, shape, O] of [['f32', [2, 6, 7, 7], 10], ['bf16', [2, 8, 6, 5], 12]] as [DType, number[], number][]) {
    test(`${dtype}: one Find per pass and plan; values within the CPU's tolerance, bit for bit flag-off when the algorithm is the heuristic's`, () => {
      const ins = inputs(dtype, shape, O);
      const cpu = run('cpu', ins);
      const on = withEnv(ON, () => run(last, ins));
      const again = withEnv(ON, () => run(last, ins));
      const chosen = plans(on.entries);
      assert.equal([...chosen.keys()].sort(), [...PASSES].sort(), `a plan note per pass: ${JSON.stringify([...chosen])}`);
      for (const [pass, c] of chosen) assert.is(c.by, 'search', `${pass}: ${JSON.stringify(c)}`);
      assert.equal(finds(on.entries).map((e) => e.count), [1, 1, 1], 'one Find per pass');
      assert.is(finds(again.entries).length, 0, 'no Find once the plans exist');
      assert.is(plans(again.entries).size, 0, 'no new plan on the second call');
      console.log(`  ${dtype} ${last}: ${[...chosen].map(([p, c]) => `${p} algo ${c.algo} (heuristic ${c.heuristic})`).join(', ')}`);
      if (emulated) for (const c of chosen.values()) assert.is(c.algo, dtype === 'f32' ? 3 : 2, 'the emulated fake times');
      const tol = TOLS[dtype];
      for (const k of ['y', 'gx', 'gw'] as const) {
        const e = maxRelErr(on[k], cpu[k]);
        assert.ok(e <= tol, `${dtype} ${k}: ${e} from the CPU (tolerance ${tol})`);
        assert.equal(again[k], on[k], `${k}: the second call equals the first`);
      }
      if (last === 'cuda:0') return; // one device: its plans for this shape exist, no flag-off twin
      const off = withEnv(OFF, () => run('cuda:0', ins));
      const heur = plans(off.entries);
      assert.is(finds(off.entries).length, 0, 'no Find with the flag off');
      const pairs: [keyof Result, string][] = [['y', 'conv2dForward'], ['gx', 'conv2dBackwardData'], ['gw', 'conv2dBackwardWeights']];
      for (const [k, pass] of pairs) {
        const a = chosen.get(pass), b = heur.get(pass);
        assert.is(b?.by, 'heuristic', `${pass} flag off`);
        assert.is(a?.heuristic, b?.algo, `${pass}: the search's heuristic algorithm is the flag-off one`);
        if (a?.algo === b?.algo) assert.equal(on[k], off[k], `${pass}: same algorithm, same bits`);
        else if (emulated) assert.not.equal(on[k], off[k], `${pass}: algorithm 3 sums in float, so the bits differ`);
      }
    });
  }

  test('.grad accumulates across a searched backward: pre-filled gradients plus the new ones', () => {
    const ins = inputs('f32', [1, 5, 6, 6], 7);
    const pre = [randn([1, 5, 6, 6]), randn([7, 5, 3, 3])];
    const cpu = run('cpu', ins, pre);
    const on = withEnv(ON, () => run('cuda:0', ins, pre));
    assert.is(finds(on.entries).length, 3, 'the search ran in this backward');
    for (const k of ['y', 'gx', 'gw'] as const) {
      const e = maxRelErr(on[k], cpu[k]);
      assert.ok(e <= 2e-5, `${k}: ${e} from the CPU (tolerance 2e-5)`);
    }
  });

  test('deterministic algorithms only, unless MESHTRAIN_CUDNN_DETERMINISTIC=0', () => {
    const ins = inputs('f32', [1, 3, 5, 5], 4);
    const cpu = run('cpu', ins);
    const free = withEnv({ ...ON, MESHTRAIN_CUDNN_DETERMINISTIC: '0' }, () => run('cuda:0', ins));
    const chosen = plans(free.entries);
    console.log(`  f32 non-deterministic allowed: ${[...chosen].map(([p, c]) => `${p} algo ${c.algo}`).join(', ')}`);
    assert.is(chosen.size, 3);
    // The emulator's fastest is the non-deterministic algorithm 0; the deterministic filter took 3 above.
    if (emulated) for (const c of chosen.values()) assert.is(c.algo, 0);
    for (const k of ['y', 'gx', 'gw'] as const) assert.ok(maxRelErr(free[k], cpu[k]) <= 2e-5, k);
  });

  test('a plan first made inside a CUDA graph capture keeps the heuristic choice (no Find: it synchronizes)', () => {
    tidy(() => {
      const x = randn([1, 4, 5, 6]).to('cuda:0');
      const w = randn([3, 4, 3, 3], { std: 0.3 }).to('cuda:0');
      const { result: g, entries } = withEnv(ON, () => cudaCensus(() => captureCudaGraph(() => conv2d(x, w, null, { padding: 1 }))));
      try {
        assert.is(finds(entries).length, 0, 'no Find during the capture');
        assert.ok(entries.some((e) => e.kind === 'note' && /conv2dForward f32: algo \d+ by heuristic \(capturing\)/.test(e.name)),
          JSON.stringify(entries.filter((e) => e.kind === 'note')));
        g.replay();
        const eager = withEnv(ON, () => conv2d(x, w, null, { padding: 1 }));
        assert.equal(flat(g.output), flat(eager), 'the replay equals the eager call (same plan)');
      } finally {
        g.dispose();
      }
    });
  });
}

test.run();
