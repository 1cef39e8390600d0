// cuBLASLt matmul for the CUDA bindings. CUDA builds only.
#pragma once
#include <cstdint>
#include <functional>
#include "tensor/dtype.h"

namespace mt {

// out[b] (contiguous [batch, M, N], dtype od) = A[b] @ B[b] (+ out when accumulating); A and B
// are [batch, rows, cols] with element strides (batch stride 0: shared). `scratch` hands out
// device memory for operands that must be packed first; it lives until the call returns.
void cudaMatmul(int dev, DType d, const void* a, const int64_t* as, const void* b, const int64_t* bs, DType od,
                void* out, int64_t batch, int64_t M, int64_t N, int64_t K, bool accumulate,
                const std::function<void*(int64_t bytes)>& scratch);
const char* dtypeNameOf(DType d);

}  // namespace mt
