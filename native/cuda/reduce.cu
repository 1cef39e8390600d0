// Sum (times a scale) or max over the middle axis of a contiguous [outer, r, inner] view; sums
// accumulate in double, as the CPU reference (native/cpu/reduce.cc) does.
#include <limits>
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace mt {
namespace {

// inner == 1 (a row reduction): one block per row, a fixed tree over the block.
template <typename T>
__global__ void reduceRows(int op, const T* x, T* out, int64_t r, double scale) {
  __shared__ double buf[cu::kThreads];
  const T* row = x + int64_t(blockIdx.x) * r;
  const bool isMax = op == 1;
  double acc = isMax ? -CUDART_INF : 0.0;
  for (int64_t k = threadIdx.x; k < r; k += cu::kThreads) {
    double v = double(cu::ld(row + k));
    if (isMax) acc = (v > acc || v != v) ? v : acc;
    else acc += v;
  }
  double total = isMax ? cu::blockReduce<true>(acc, buf) : cu::blockReduce<false>(acc, buf);
  if (threadIdx.x == 0) cu::st(out + blockIdx.x, isMax ? total : total * scale);
}

// inner > 1: one thread per output element walks r; neighbouring threads read neighbouring
// addresses, so the loads coalesce.
template <typename T>
__global__ void reduceColumns(int op, const T* x, T* out, int64_t outer, int64_t r, int64_t inner, double scale) {
  const bool isMax = op == 1;
  MT_CU_LOOP(idx, outer * inner) {
    int64_t o = idx / inner, i = idx % inner;
    const T* base = x + o * r * inner + i;
    double acc = isMax ? -CUDART_INF : 0.0;
    for (int64_t k = 0; k < r; k++) {
      double v = double(cu::ld(base + k * inner));
      if (isMax) acc = (v > acc || v != v) ? v : acc;
      else acc += v;
    }
    cu::st(out + idx, isMax ? acc : acc * scale);
  }
}

}  // namespace

void cudaReduce(int dev, int op, int dtype, const void* x, void* out, int64_t outer, int64_t r, int64_t inner,
                double scale) {
  if (op != 0 && op != 1) cu::fail("reduce: unknown op code " + std::to_string(op));
  if (outer * inner == 0) return;
  if (r == 0 && op == 1) cu::fail("reduce: max over an empty dim");
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "reduce", {
    if (inner == 1 && outer <= int64_t(1) << 31)
      reduceRows<T><<<unsigned(outer), cu::kThreads, 0, s>>>(op, static_cast<const T*>(x), static_cast<T*>(out), r, scale);
    else
      reduceColumns<T><<<cu::blocksFor(outer * inner), cu::kThreads, 0, s>>>(op, static_cast<const T*>(x), static_cast<T*>(out),
                                                                            outer, r, inner, scale);
  });
  cu::checkLaunch("reduce");
}

}  // namespace mt
