/**
 * linear's product in f64, the reference the CUDA linear tests (cuda_linear_epilogue,
 * cuda_linear_gelu) bound their results against.
 */
import type { Tensor } from '../../src/index.ts';

/** y = x @ Wᵀ + b (x [M, K], w [N, K], b [N] or none) in f64 from the tensors' own (rounded) values. */
export function linearReference(x: Tensor, w: Tensor, b: Tensor | null): Float64Array {
  const [M, K] = x.shape;
  const N = w.shape[0];
  const xs = x.toList();
  const ws = w.toList();
  const bs = b ? b.toList() : null;
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let acc = bs ? bs[j] : 0;
      for (let k = 0; k < K; k++) acc += xs[i * K + k] * ws[j * K + k];
      out[i * N + j] = acc;
    }
  return out;
}
