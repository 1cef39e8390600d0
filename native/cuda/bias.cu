// Matmul's bias epilogue: out[r, j] = bias[j] (+ out[r, j]) when K == 0 (biasOnly), else
// out[r, j] += bias[j] after the product. Bias is f32 (f64 for f64 outputs), as on the CPU, or in
// the output's dtype (as cuBLASLt's bias epilogue takes it, when that has no algorithm). Rows of out
// are ld elements apart (a padded pitch; ld == n: contiguous); the padding is not touched.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace mt {
namespace {

template <typename O, typename B>
__global__ void addBias(O* out, const B* bias, int64_t rows, int64_t n, int64_t ld, bool keepOut, bool hasBias) {
  MT_CU_LOOP(i, rows * n) {
    const int64_t c = i % n;
    O* o = out + (i / n) * ld + c;
    double v = hasBias ? double(cu::ld(bias + c)) : 0.0;
    if (keepOut) v += double(cu::ld(o));
    cu::st(o, v);
  }
}

}  // namespace

void cudaAddBias(int dev, int outDtype, void* out, int biasDtype, const void* bias, int64_t rows, int64_t n,
                 bool accumulate, bool biasOnly, int64_t ld) {
  if (rows * n == 0) return;
  if (ld <= 0) ld = n;
  if (ld < n) cu::fail("matmul bias: row pitch " + std::to_string(ld) + " is below the " + std::to_string(n) + " columns");
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const bool keepOut = biasOnly ? accumulate : true;
  MT_CU_FLOAT(outDtype, "matmul bias", {
    auto addF64 = addBias<T, double>;
    auto addF32 = addBias<T, float>;
    auto addOwn = addBias<T, T>;
    if (biasDtype == outDtype && biasDtype != cu::F64 && biasDtype != cu::F32)
      MT_LAUNCH(addOwn, cu::blocksFor(rows * n), cu::kThreads, 0, s, static_cast<T*>(out), static_cast<const T*>(bias), rows,
                n, ld, keepOut, bias != nullptr);
    else if (biasDtype == cu::F64)
      MT_LAUNCH(addF64, cu::blocksFor(rows * n), cu::kThreads, 0, s, static_cast<T*>(out), static_cast<const double*>(bias),
                rows, n, ld, keepOut, bias != nullptr);
    else
      MT_LAUNCH(addF32, cu::blocksFor(rows * n), cu::kThreads, 0, s, static_cast<T*>(out), static_cast<const float*>(bias),
                rows, n, ld, keepOut, bias != nullptr);
  });
  cu::checkLaunch("matmul bias");
}

}  // namespace mt
