// Sum (times a scale) or max over the middle axis of a contiguous [outer, r, inner] view; sums
// accumulate in double, as the CPU reference (native/cpu/reduce.cc) does.
#include <algorithm>
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

// Rows per chunk of the long axis: a function of the shape only, so results do not depend on the
// device. 0 means the plain one-thread-per-output kernel is used.
int64_t chunkRows(int64_t outputs, int64_t r) {
  if (outputs >= 32768 || r < 512) return 0;
  return std::max<int64_t>(128, (r + 65534) / 65535);  // at most 65535 chunks (the grid's y limit)
}

// Partial fold of rows [c*rows, (c+1)*rows) for every output: partial[c * outputs + idx].
template <typename T>
__global__ void reduceChunks(int op, const T* x, int64_t outer, int64_t r, int64_t inner, int64_t rows, double* partial) {
  const bool isMax = op == 1;
  const int64_t c = blockIdx.y, outputs = outer * inner;
  const int64_t k0 = c * rows, k1 = min(r, k0 + rows);
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < outputs; idx += int64_t(gridDim.x) * blockDim.x) {
    int64_t o = idx / inner, i = idx % inner;
    const T* base = x + o * r * inner + i;
    double acc = isMax ? -CUDART_INF : 0.0;
    for (int64_t k = k0; k < k1; k++) {
      double v = double(cu::ld(base + k * inner));
      if (isMax) acc = (v > acc || v != v) ? v : acc;
      else acc += v;
    }
    partial[c * outputs + idx] = acc;
  }
}

template <typename T>
__global__ void reduceFinish(int op, const double* partial, int64_t chunks, int64_t outputs, T* out, double scale) {
  const bool isMax = op == 1;
  MT_CU_LOOP(idx, outputs) {
    double acc = isMax ? -CUDART_INF : 0.0;
    for (int64_t c = 0; c < chunks; c++) {
      double v = partial[c * outputs + idx];
      if (isMax) acc = (v > acc || v != v) ? v : acc;
      else acc += v;
    }
    cu::st(out + idx, isMax ? acc : acc * scale);
  }
}

}  // namespace

int64_t cudaReduceScratch(int64_t outer, int64_t r, int64_t inner) {
  if (inner == 1) return 0;
  const int64_t rows = chunkRows(outer * inner, r);
  return rows ? (r + rows - 1) / rows * outer * inner : 0;
}

void cudaReduce(int dev, int op, int dtype, const void* x, void* out, int64_t outer, int64_t r, int64_t inner,
                double scale, double* scratch) {
  if (op != 0 && op != 1) cu::fail("reduce: unknown op code " + std::to_string(op));
  if (outer * inner == 0) return;
  if (r == 0 && op == 1) cu::fail("reduce: max over an empty dim");
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "reduce", {
    const int64_t rows = inner == 1 ? 0 : chunkRows(outer * inner, r);
    if (rows && scratch) {
      const int64_t chunks = (r + rows - 1) / rows, outputs = outer * inner;
      dim3 grid(unsigned((outputs + cu::kThreads - 1) / cu::kThreads), unsigned(chunks));
      MT_LAUNCH(reduceChunks<T>, grid, cu::kThreads, 0, s, op, static_cast<const T*>(x), outer, r, inner, rows, scratch);
      MT_LAUNCH(reduceFinish<T>, cu::blocksFor(outputs), cu::kThreads, 0, s, op, scratch, chunks, outputs, static_cast<T*>(out), scale);
    } else if (inner == 1 && outer <= int64_t(1) << 31)
      MT_LAUNCH(reduceRows<T>, unsigned(outer), cu::kThreads, 0, s, op, static_cast<const T*>(x), static_cast<T*>(out), r, scale);
    else
      MT_LAUNCH(reduceColumns<T>, cu::blocksFor(outer * inner), cu::kThreads, 0, s, op, static_cast<const T*>(x), static_cast<T*>(out),
                outer, r, inner, scale);
  });
  cu::checkLaunch("reduce");
}

}  // namespace mt
