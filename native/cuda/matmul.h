// cuBLASLt matmul for the CUDA bindings. CUDA builds only.
#pragma once
#include <cstdint>
#include <functional>
#include "tensor/dtype.h"

namespace mt {

// What cuBLASLt's epilogue does beside the product, both vectors in the output's dtype (the
// documented default of CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE) and 16-byte aligned.
struct MatmulEpilogue {
  const void* bias = nullptr;  // added to every row of out: N values (CUBLASLT_EPILOGUE_BIAS)
  void* biasGradA = nullptr;   // receives A's row sums over K: M values, batch 1 only (BGRADB, as A is cuBLASLt's B)
  // out = gelu(product (+ bias)), GELU's tanh form (GELU_BIAS / GELU); batch 1, N a multiple of 8.
  bool gelu = false;
  void* geluAux = nullptr;     // with gelu: receives the pre-activation, [M, N] in out's dtype (GELU_AUX[_BIAS])
  // out = product * gelu'(geluGradAux), GELU's backward (DGELU): the pre-activation a GELU_AUX forward
  // stored, [M, N] contiguous in out's dtype; batch 1, N a multiple of 8, nothing else beside it.
  const void* geluGradAux = nullptr;
  // out = product (+ bias) + addend, one rounding: cuBLASLt's C with beta = 1 (a residual add);
  // out's dtype and layout (row pitch included), not overlapping out; no GELU, no accumulation.
  const void* addend = nullptr;
};

// out[b] (contiguous [batch, M, N], dtype od) = A[b] @ B[b] (+ out when accumulating, + the addend) (+ the
// epilogue); A and B are [batch, rows, cols] with element strides (batch stride 0: shared).
// `scratch` hands out device memory for operands that must be packed first; it lives until the
// call returns. False, with no product queued, when cuBLASLt has no algorithm for the epilogue (or
// a vector is under-aligned): the caller does it another way. ldOut > N: out's rows are ldOut
// elements apart (a padded row pitch, matrices M * ldOut apart); the padding is never written.
bool cudaMatmul(int dev, DType d, const void* a, const int64_t* as, const void* b, const int64_t* bs, DType od,
                void* out, int64_t batch, int64_t M, int64_t N, int64_t K, bool accumulate,
                const std::function<void*(int64_t bytes)>& scratch, const MatmulEpilogue& epilogue = {},
                int64_t ldOut = 0);
const char* dtypeNameOf(DType d);

}  // namespace mt
