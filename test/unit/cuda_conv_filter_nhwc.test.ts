/**
 * conv2d on CUDA hands cuDNN's NHWC kernels a 3x3 filter laid out [O, kh, kw, C / groups] that it
 * copied once in forward and kept for backward-data (native flag conv2dFilterNhwc), instead of the
 * native side copying it in both passes: output, input and weight gradients equal, bit for bit,
 * the same calls with the flag masked, through cuDNN and through the direct kernels
 * (MESHTRAIN_CUDA_CONV=direct, which get an [O, C / groups, kh, kw] copy back), f32/bf16/f16,
 * groups 1 and 2, stride 2; one conv's forward + backward queues one strided copy fewer (the
 * filter: 2 instead of 3); and a weight saved by reference (ZeRO-3) gets no kept copy (none may
 * outlive the parameter's release). Without a usable device: one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { saveByReference } from '../../src/autograd/node.ts';
import { conv2d, cudaCensus, cudaIsAvailable, type DType, manualSeed, mul, native, noGrad, randn, sum, type Tensor } from '../../src/index.ts';

const DEV = 'cuda:0';
const cuda = native.cuda as Record<string, unknown>;
const bits = (t: Tensor): number[] => t.to('cpu').contiguous().toList() as number[];

interface Out {
  y: number[];
  gx: number[];
  gw: number[];
  stridedCopies: number;
}

/** conv2d of channels-last x [2, 4, 7, 6] with weight [6, 4 / groups, 3, 3] and its gradients, the flag on or masked. */
function run(dtype: DType, groups: number, stride: number, flag: boolean, byReference = false): Out {
  const saved = cuda.conv2dFilterNhwc;
  cuda.conv2dFilterNhwc = flag ? saved : false;
  try {
    const x = noGrad(() => randn([2, 7, 6, 4], { dtype, device: DEV }).permute([0, 3, 1, 2])).requiresGrad_(true);
    const w = noGrad(() => randn([6, 4 / groups, 3, 3], { dtype, device: DEV }).mul(0.3)).requiresGrad_(true);
    if (byReference) saveByReference(w);
    const { result: y, entries } = cudaCensus(() => {
      const out = conv2d(x, w, null, { padding: 1, stride, groups });
      const g = noGrad(() => randn([...out.shape], { dtype, device: DEV }));
      sum(mul(out, g)).backward();
      return out;
    });
    const stridedCopies = entries.filter((e) => e.name.startsWith('copy') && e.label === `${dtype} strided`).reduce((n, e) => n + e.count, 0);
    return { y: bits(y), gx: bits(x.grad as Tensor), gw: bits(w.grad as Tensor), stridedCopies };
  } finally {
    cuda.conv2dFilterNhwc = saved;
  }
}

function same(what: string, got: number[], want: number[]): void {
  const i = got.length === want.length ? got.findIndex((v, j) => !Object.is(v, want[j])) : 0;
  assert.is(i, -1, `${what}: element ${i} is ${got[i]}, want ${want[i]}`);
}

if (!cudaIsAvailable()) {
  test('conv2d NHWC filter kept for backward-data', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_conv_filter_nhwc: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  test('the addon takes NHWC filters (conv2dFilterNhwc)', () => {
    assert.is(cuda.conv2dFilterNhwc, true);
  });

  for (const direct of [false, true]) {
    for (const [dtype, groups, stride] of [['bf16', 1, 1], ['f16', 2, 2], ['f32', 1, 2]] as const) {
      test(`${direct ? 'direct kernels' : 'cuDNN'} ${dtype} groups ${groups} stride ${stride}: bit for bit the copying path`, () => {
        if (direct) process.env.MESHTRAIN_CUDA_CONV = 'direct';
        try {
          manualSeed(groups * 10 + stride);
          const a = run(dtype, groups, stride, true);
          manualSeed(groups * 10 + stride);
          const b = run(dtype, groups, stride, false);
          same('output', a.y, b.y);
          same('input gradient', a.gx, b.gx);
          same('weight gradient', a.gw, b.gw);
          // The same other strided copies (the incoming gradient to channels-last) both ways.
          if (!direct) assert.is(a.stridedCopies, b.stridedCopies - 1, `strided copies ${a.stridedCopies} with the kept filter, ${b.stridedCopies} without`);
        } finally {
          delete process.env.MESHTRAIN_CUDA_CONV;
        }
      });
    }
  }

  test('a weight saved by reference (ZeRO-3) gets no kept copy: the native side copies in each pass', () => {
    manualSeed(5);
    const a = run('bf16', 1, 1, true, true);
    manualSeed(5);
    const b = run('bf16', 1, 1, false);
    same('input gradient', a.gx, b.gx);
    assert.is(a.stridedCopies, b.stridedCopies);
  });
}

test.run();
