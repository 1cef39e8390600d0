/**
 * The attention backward's pre-pass dvec[row] = dot(dO[row], o[row]) (native/cuda/attention.cu; the
 * fa2 family, MESHTRAIN_ATTENTION=fa2 here):
 * the 16-byte vector kernel (attnRowDotVec, every row of o and dO on the 16-byte grid) sums in the
 * warp-per-row kernel's order (attnRowDot, the fallback), so the gradients dq, dk, dv of one
 * backward must be equal bit for bit whichever ran. Each case runs the backward three times on the
 * same values: o and dO aligned (the vector kernel), o and dO one element past an aligned base (base
 * off the grid) and in rows one element wider than D (strides off the grid) (both the fallback); the
 * launch census names the kernel that ran. f64, f32, bf16, f16 (2, 4, 8, 8 elements per load); head
 * dims 32, 64, 128; rows 2 x 3 x 37 (a partial last block for every vector width); o in GPT's
 * [B, T, H, D] layout and contiguous. The values themselves are checked against the CPU's composed
 * ops by cuda_attention (its outputs are aligned: the vector kernel). Without a device one SKIP line.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cat, cudaCensus, cudaIsAvailable, type DType, native, randn, type Tensor, tidy, transpose, zeros } from '../../src/index.ts';
import { kernelsOn } from '../../src/tensor/backend.ts';
import { dtypeCode } from '../../src/tensor/dtype.ts';
import { assertSameBits } from '../helpers/bits.ts';
import { withEnv } from '../helpers/env.ts';

const DEV = 'cuda:0';
const [B, H, T] = [2, 3, 37];
const ITEM: Record<string, number> = { f64: 8, f32: 4, bf16: 2, f16: 2 };

const strides3 = (x: Tensor): number[] => [x.strides[0], x.strides[1], x.strides[2]];
const statDType = (d: DType): DType => (d === 'f64' ? 'f64' : 'f32');

/** x's values in a view whose first element is one past a 16-byte aligned base (same strides). */
function offGrid(x: Tensor): Tensor {
  const flat = cat([zeros([1], { dtype: x.dtype, device: DEV }), x.contiguous().reshape([x.numel])]);
  return flat.narrow(0, 1, x.numel).reshape([...x.shape]);
}

/** x's values in rows one element wider than D (position stride D + 1). */
function wideRows(x: Tensor): Tensor {
  const pad = zeros([...x.shape.slice(0, 3), 1], { dtype: x.dtype, device: DEV });
  return cat([x, pad], 3).narrow(3, 0, x.shape[3]);
}

/** dq, dk, dv of one backward from o and dO as given, and the pre-pass kernel the census saw. */
function backward(q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, dO: Tensor) {
  const [dq, dk, dv] = [q, k, v].map((x) => zeros([...x.shape], { dtype: x.dtype, device: DEV }));
  const view = (x: Tensor) => [x.id, x.offset, strides3(x)] as const;
  const { entries } = cudaCensus(() =>
    kernelsOn(DEV).attentionBackward(dtypeCode(q.dtype), B, H, T, T, q.shape[3], 1 / Math.sqrt(q.shape[3]), true, ...view(q), ...view(k),
      ...view(v), ...view(o), ...view(dO), lse.id, ...view(dq), ...view(dk), ...view(dv)));
  const dots = entries.filter((e) => e.kind === 'kernel' && (e.name === 'dot' || e.name === 'dotVec')).map((e) => e.name);
  return { grads: [dq, dk, dv], dots };
}

if (!cudaIsAvailable()) {
  test('attention dot pre-pass', () => {
    const info = native.deviceInfo();
    console.log(`SKIP test/unit/cuda_attention_dot: no usable CUDA device (${info.cudaCompiled ? info.cudaStatus : 'built without CUDA'})`);
  });
} else {
  for (const dtype of ['f64', 'f32', 'bf16', 'f16'] as DType[]) {
    // Our kernels' pre-pass: cuDNN (the default at head dims 64/128) computes its own.
    test(`dot pre-pass: vector kernel = warp-per-row kernel bit for bit, ${dtype}`, () => withEnv({ MESHTRAIN_ATTENTION: 'fa2' }, () => {
      for (const D of [32, 64, 128]) {
        for (const gptLayout of [true, false]) {
          tidy(() => {
            const name = `${dtype} D ${D} ${gptLayout ? '[B, T, H, D]' : 'contiguous'}`;
            const mk = () => randn([B, H, T, D], { device: DEV }).to(dtype);
            const [q, k, v, dO] = [mk(), mk(), mk(), mk()];
            const o = gptLayout ? transpose(zeros([B, T, H, D], { dtype, device: DEV }), 1, 2) : zeros([B, H, T, D], { dtype, device: DEV });
            const lse = zeros([B * H * T], { dtype: statDType(dtype), device: DEV });
            kernelsOn(DEV).attentionForward(dtypeCode(dtype), B, H, T, T, D, 1 / Math.sqrt(D), true, q.id, q.offset, strides3(q), k.id, k.offset,
              strides3(k), v.id, v.offset, strides3(v), o.id, o.offset, strides3(o), lse.id);
            assert.is((o.offset * ITEM[dtype]) % 16, 0, `${name}: o starts on the grid`);
            const vec = backward(q, k, v, o, lse, dO);
            assert.equal(vec.dots, ['dotVec'], `${name}: aligned rows take the vector kernel`);
            for (const [how, f] of [['base off the grid', offGrid], ['rows D + 1 wide', wideRows]] as const) {
              const fb = backward(q, k, v, f(o), lse, f(dO));
              assert.equal(fb.dots, ['dot'], `${name}, ${how}: the warp-per-row kernel`);
              fb.grads.forEach((g, i) => assertSameBits(`${name}, ${how}: gradient ${'qkv'[i]}`, g, vec.grads[i]));
            }
          });
        }
      }
    }));
  }
}

test.run();
