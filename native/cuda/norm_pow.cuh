// The chunked sum |x|^p reduction shared by normPow (partials read by the host, optim.cu) and
// normPowInto (partials combined on the device into an f64 accumulator, grad_norm.cu).
#pragma once
#include "cuda/common.cuh"

namespace mt {
namespace cu {

constexpr int64_t kNormChunk = 4096;  // elements per block: the partials' order is fixed

// acc (+)= v: a sum, or a max for p = inf; NaN propagates either way (an accumulator that is
// already NaN stays NaN: NaN compares false).
__device__ __forceinline__ double normCombine(double acc, double v, bool isMax) {
  if (!isMax) return acc + v;
  return (v > acc || v != v) ? v : acc;
}

// One block per chunk of kNormChunk elements: sum |x|^p, or max |x| (p = inf), NaN propagating.
// Writes partial[blockIdx.x]; with `acc` (a grid of one block) thread 0 adds its result there instead.
template <typename T>
__global__ void normPowKernel(const T* x, int64_t n, double p, double* partial, double* acc) {
  __shared__ double buf[kThreads];
  const bool isMax = isinf(p);
  const int64_t lo = int64_t(blockIdx.x) * kNormChunk;
  const int64_t hi = min(n, lo + kNormChunk);
  double sum = 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += kThreads) {
    double a = fabs(double(ld(x + i)));
    if (isMax) sum = (a > sum || a != a) ? a : sum;
    else if (p == 2) sum += a * a;
    else if (p == 1) sum += a;
    else sum += pow(a, p);
  }
  double r = isMax ? blockReduce<true>(sum, buf) : blockReduce<false>(sum, buf);
  if (threadIdx.x != 0) return;
  if (acc) *acc = normCombine(*acc, r, isMax);
  else partial[blockIdx.x] = r;
}

}  // namespace cu
}  // namespace mt
