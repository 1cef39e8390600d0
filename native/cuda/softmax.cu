// Softmax and log-softmax over the last dim of contiguous [rows, cols], forward and backward,
// with an input scale and an optional causal mask (query row i sees columns j <= i % causalRows).
// One warp per row up to 4096 columns, one block per row beyond; row statistics in double. Reference: native/cpu/softmax.cc.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "cuda/warp_rows.cuh"

namespace mt {
namespace {

__device__ __forceinline__ int64_t visibleCols(int64_t r, int64_t cols, int64_t causalRows) {
  return causalRows > 0 ? min(cols, r % causalRows + 1) : cols;
}

template <typename T>
__global__ void softmaxForward(const T* x, T* y, int64_t cols, bool logOut, int64_t causalRows, double scale) {
  using C = typename cu::Acc<T>::type;
  __shared__ double buf[cu::kThreads];
  const int64_t r = blockIdx.x;
  const T* xr = x + r * cols;
  T* yr = y + r * cols;
  const int64_t n = visibleCols(r, cols, causalRows);
  const C s = C(scale);
  double m = -CUDART_INF;
  for (int64_t j = threadIdx.x; j < n; j += cu::kThreads) {
    double v = double(s * cu::ld(xr + j));
    m = (v > m || v != v) ? v : m;
  }
  m = cu::blockReduce<true>(m, buf);
  const C mc = C(m);
  double sum = 0;
  for (int64_t j = threadIdx.x; j < n; j += cu::kThreads) sum += double(exp(s * cu::ld(xr + j) - mc));
  sum = cu::blockReduce<false>(sum, buf);
  if (logOut) {
    const C lse = C(m + log(sum));
    for (int64_t j = threadIdx.x; j < cols; j += cu::kThreads)
      cu::st(yr + j, j < n ? s * cu::ld(xr + j) - lse : -C(CUDART_INF));
  } else {
    const C inv = C(1.0 / sum);
    for (int64_t j = threadIdx.x; j < cols; j += cu::kThreads)
      cu::st(yr + j, j < n ? exp(s * cu::ld(xr + j) - mc) * inv : C(0));
  }
}

// softmax: dx = scale * y * (g - sum(g * y)); log-softmax: dx = scale * (g - exp(y) * sum(g)).
template <typename T>
__global__ void softmaxBackward(const T* y, const T* g, T* dx, int64_t cols, bool logOut, int64_t causalRows,
                                double scale) {
  using C = typename cu::Acc<T>::type;
  __shared__ double buf[cu::kThreads];
  const int64_t r = blockIdx.x;
  const T* yr = y + r * cols;
  const T* gr = g + r * cols;
  T* dr = dx + r * cols;
  const int64_t n = visibleCols(r, cols, causalRows);
  double acc = 0;
  for (int64_t j = threadIdx.x; j < n; j += cu::kThreads)
    acc += logOut ? double(cu::ld(gr + j)) : double(cu::ld(gr + j)) * double(cu::ld(yr + j));
  const C total = C(cu::blockReduce<false>(acc, buf));
  const C s = C(scale);
  for (int64_t j = threadIdx.x; j < cols; j += cu::kThreads) {
    if (j >= n) {
      cu::st(dr + j, C(0));
      continue;
    }
    C yj = cu::ld(yr + j), gj = cu::ld(gr + j);
    cu::st(dr + j, logOut ? s * (gj - exp(yj) * total) : s * yj * (gj - total));
  }
}

// Rows of up to cu::kWarpCols columns (warp_rows.cuh): one warp per row, same formulas, statistics in double.

template <typename T>
__global__ void softmaxForwardWarp(const T* x, T* y, int64_t rows, int64_t cols, bool logOut, int64_t causalRows,
                                   double scale) {
  using C = typename cu::Acc<T>::type;
  const auto [r, lane, live] = cu::warpRow(rows);
  if (!live) return;
  const T* xr = x + r * cols;
  T* yr = y + r * cols;
  const int64_t n = visibleCols(r, cols, causalRows);
  const C s = C(scale);
  double m = -CUDART_INF;
  for (int64_t j = lane; j < n; j += 32) {
    double v = double(s * cu::ld(xr + j));
    m = (v > m || v != v) ? v : m;
  }
  m = cu::warpMax(m);
  const C mc = C(m);
  double sum = 0;
  for (int64_t j = lane; j < n; j += 32) sum += double(exp(s * cu::ld(xr + j) - mc));
  sum = cu::warpSum(sum);
  if (logOut) {
    const C lse = C(m + log(sum));
    for (int64_t j = lane; j < cols; j += 32) cu::st(yr + j, j < n ? s * cu::ld(xr + j) - lse : -C(CUDART_INF));
  } else {
    const C inv = C(1.0 / sum);
    for (int64_t j = lane; j < cols; j += 32) cu::st(yr + j, j < n ? exp(s * cu::ld(xr + j) - mc) * inv : C(0));
  }
}

template <typename T>
__global__ void softmaxBackwardWarp(const T* y, const T* g, T* dx, int64_t rows, int64_t cols, bool logOut,
                                    int64_t causalRows, double scale) {
  using C = typename cu::Acc<T>::type;
  const auto [r, lane, live] = cu::warpRow(rows);
  if (!live) return;
  const T* yr = y + r * cols;
  const T* gr = g + r * cols;
  T* dr = dx + r * cols;
  const int64_t n = visibleCols(r, cols, causalRows);
  double acc = 0;
  for (int64_t j = lane; j < n; j += 32)
    acc += logOut ? double(cu::ld(gr + j)) : double(cu::ld(gr + j)) * double(cu::ld(yr + j));
  const C total = C(cu::warpSum(acc));
  const C s = C(scale);
  for (int64_t j = lane; j < cols; j += 32) {
    if (j >= n) {
      cu::st(dr + j, C(0));
      continue;
    }
    C yj = cu::ld(yr + j), gj = cu::ld(gr + j);
    cu::st(dr + j, logOut ? s * (gj - exp(yj) * total) : s * yj * (gj - total));
  }
}

}  // namespace

void cudaSoftmaxForward(int dev, int dtype, const void* x, void* y, int64_t rows, int64_t cols, bool logOut,
                        int64_t causalRows, double scale) {
  cu::checkRows("softmax", rows);
  if (rows == 0 || cols == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "softmax", {
    if (cols <= cu::kWarpCols)
      MT_LAUNCH(softmaxForwardWarp<T>, cu::warpRowBlocks(rows), cu::kThreads, 0, s, static_cast<const T*>(x),
                static_cast<T*>(y), rows, cols, logOut, causalRows, scale);
    else
      MT_LAUNCH(softmaxForward<T>, unsigned(rows), cu::kThreads, 0, s, static_cast<const T*>(x), static_cast<T*>(y), cols,
                logOut, causalRows, scale);
  });
  cu::checkLaunch("softmaxForward");
}

void cudaSoftmaxBackward(int dev, int dtype, const void* y, const void* g, void* dx, int64_t rows, int64_t cols,
                         bool logOut, int64_t causalRows, double scale) {
  cu::checkRows("softmax backward", rows);
  if (rows == 0 || cols == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "softmax backward", {
    if (cols <= cu::kWarpCols)
      MT_LAUNCH(softmaxBackwardWarp<T>, cu::warpRowBlocks(rows), cu::kThreads, 0, s, static_cast<const T*>(y),
                static_cast<const T*>(g), static_cast<T*>(dx), rows, cols, logOut, causalRows, scale);
    else
      MT_LAUNCH(softmaxBackward<T>, unsigned(rows), cu::kThreads, 0, s, static_cast<const T*>(y), static_cast<const T*>(g),
                static_cast<T*>(dx), cols, logOut, causalRows, scale);
  });
  cu::checkLaunch("softmaxBackward");
}

}  // namespace mt
