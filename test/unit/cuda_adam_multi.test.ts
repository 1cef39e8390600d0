/**
 * AdamW on a CUDA device updates many parameters per launch (src/optim/adam_multi.ts,
 * native/cuda/adam_multi.cu) instead of one launch per parameter: parameters, fp32 masters and
 * both moments equal the per-parameter kernel's bit for bit over 3 steps, and the step queues
 * ceil(n / 24) launches per group of dtypes and step number. Two lists: 80 parameters of mixed
 * sizes (groups of more than one launch's 24; bf16 with masters and f32 in one group; empty
 * parameters between others; a parameter without a gradient for a step), and 30 long parameters
 * whose launches have fewer threads than elements (each thread strides across tensors, so the
 * tensor search carries from one group to the next). A thread updates a group of 4 elements (f32
 * state), as one 16/8-byte access per array where all of a tensor's pointers allow it, else one
 * by one (odd sizes leave a short last group; state in flat buffers at offsets off the grid): the
 * launch census counts the vector tensors, and a third list whose gradients sit one element off
 * their storage's start (misaligned: element by element) beside aligned ones must still match bit
 * for bit. Without a device: one SKIP line (the
 * CPU path is optim.test.ts's, unchanged).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { AdamW, cudaCensus, cudaIsAvailable, type DType, formatCensus, manualSeed, native, randn, type Tensor } from '../../src/index.ts';

interface Result {
  values: number[][];
  /** Adam launches and their threads at the last step. */
  launches: number;
  threads: number;
  /** Tensors the step's launches moved 4 elements at a time, and all tensors they updated. */
  vectorTensors: number;
  tensors: number;
}

/**
 * 3 AdamW steps over parameters of `sizes` (parameter 7 has no gradient at step 1), through adamMulti
 * or per parameter; `offGrid(i)`: parameter i's gradient is a view one element into its storage.
 */
function run(multi: boolean, sizes: number[], dtypeOf: (i: number) => DType, offGrid: (i: number) => boolean = () => false): Result {
  manualSeed(3);
  const params: Tensor[] = sizes.map((n, i) => randn([n], { device: 'cuda:0' }).to(dtypeOf(i)).detach().requiresGrad_(true));
  const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0.1 });
  const saved = native.cuda.adamMulti;
  if (!multi) native.cuda.adamMulti = undefined;
  let launches = 0;
  let threads = 0;
  let vectorTensors = 0;
  let tensors = 0;
  try {
    for (let step = 0; step < 3; step++) {
      params.forEach((p, i) => {
        const n = p.shape[0];
        const g = randn([n + 1], { device: 'cuda:0' }).to(p.dtype);
        p.grad = i === 7 && step === 1 ? null : offGrid(i) ? g.narrow(0, 1, n) : g.narrow(0, 0, n);
      });
      const { entries } = cudaCensus(() => opt.step());
      const adam = entries.filter((e) => /optim\.cu|adam_multi\.cu/.test(e.site));
      if (step === 2) {
        launches = adam.reduce((n, e) => n + e.count, 0);
        threads = adam.reduce((n, e) => n + e.threads, 0);
        for (const e of adam) {
          const m = /^(\d+)\/(\d+) tensors 4-wide$/.exec(e.label);
          if (!m) continue;
          vectorTensors += Number(m[1]) * e.count;
          tensors += Number(m[2]) * e.count;
        }
        if (multi) console.log(`  AdamW step over ${sizes.length} parameters: ${launches} launches\n${formatCensus(adam)}`);
      }
    }
  } finally {
    native.cuda.adamMulti = saved;
  }
  const state = opt.stateDict() as unknown as { state: Record<string, Record<string, Tensor>> };
  const values = params.map((p) => Array.from(p.to('f32').toArray() as Float32Array));
  for (const s of Object.values(state.state)) for (const t of Object.values(s)) if (t && typeof t === 'object' && 'toArray' in t) values.push(Array.from(t.to('f32').toArray() as Float32Array));
  return { values, launches, threads, vectorTensors, tensors };
}

function assertBitwise(multi: Result, single: Result): void {
  assert.is(multi.values.length, single.values.length);
  multi.values.forEach((v, i) => assert.equal(v, single.values[i], `tensor ${i}`));
}

if (!cudaIsAvailable()) {
  test('AdamW over many parameters per launch', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_adam_multi: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('bit for bit the per-parameter kernel, with ceil(n / 24) launches per group of dtypes and step', () => {
    // Every 10th parameter (from the 5th) is empty; f32 at even indices, bf16 at odd ones.
    const sizes = Array.from({ length: 80 }, (_, i) => (i % 10 === 4 ? 0 : 1 + ((i * 37) % 300)));
    const dtypeOf = (i: number): DType => (i % 2 === 0 ? 'f32' : 'bf16');
    const single = run(false, sizes, dtypeOf);
    const multi = run(true, sizes, dtypeOf);
    assertBitwise(multi, single);
    assert.is(single.launches, 72); // one per nonempty parameter
    // f32: 32 nonempty (2 launches); bf16 at step 3: 39 (2) and the parameter that skipped a step (its own step number).
    assert.is(multi.launches, 5);
    // Every nonempty tensor (72) once at step 3. The moments (and masters) lie in flat buffers at the
    // sum of the sizes before them: a tensor takes the vector loads where that sum is a multiple of 4.
    assert.is(multi.tensors, 72);
    assert.ok(multi.vectorTensors > 0 && multi.vectorTensors < 72, `${multi.vectorTensors} of 72 tensors 4-wide`);
  });

  test('bit for bit with gradients off the 4-element grid (those tensors element by element)', () => {
    // Every third gradient starts one element into its storage; sizes 64 + 4i keep the flat state
    // buffers' offsets on the grid, so exactly the other 20 tensors take the vector loads.
    const sizes = Array.from({ length: 30 }, (_, i) => 64 + 4 * i);
    const dtypeOf = (i: number): DType => (i % 2 === 0 ? 'f32' : 'bf16');
    const offGrid = (i: number) => i % 3 === 0;
    const single = run(false, sizes, dtypeOf, offGrid);
    const multi = run(true, sizes, dtypeOf, offGrid);
    assertBitwise(multi, single);
    assert.equal([multi.vectorTensors, multi.tensors], [20, 30]);
  });

  test('bit for bit when threads stride across tensors (more elements than threads per launch)', () => {
    // bf16 (10 parameters) and f32 (19 and an empty one): each launch far more elements than a wave of threads.
    const sizes = Array.from({ length: 30 }, (_, i) => (i === 5 ? 0 : 40_000 + 37 * i));
    const dtypeOf = (i: number): DType => (i % 3 === 0 ? 'bf16' : 'f32');
    const single = run(false, sizes, dtypeOf);
    const multi = run(true, sizes, dtypeOf);
    assertBitwise(multi, single);
    assert.is(multi.launches, 3); // f32, bf16 at step 3, and parameter 7 (f32) that skipped a step
    const elements = sizes.reduce((a, n) => a + n, 0);
    // Fewer threads than elements, each tensor shorter than a launch's threads: a thread's next element lies in a later tensor.
    assert.ok(multi.threads < elements, `${multi.threads} threads for ${elements} elements`);
  });
}

test.run();
