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

// Row r of the softmax (log-softmax with logOut): columns past the causal limit are 0 (-inf); the
// team (warp_rows.cuh) shares the column loops and the reductions.
template <typename T, typename Team>
__device__ __forceinline__ void forwardRow(const Team& t, const T* x, T* y, int64_t r, int64_t cols, bool logOut,
                                           int64_t causalRows, double scale) {
  using C = typename cu::Acc<T>::type;
  const T* xr = x + r * cols;
  T* yr = y + r * cols;
  const int64_t n = visibleCols(r, cols, causalRows);
  const C s = C(scale);
  double m = -CUDART_INF;
  for (int64_t j = t.first(); j < n; j += Team::kStride) {
    double v = double(s * cu::ld(xr + j));
    m = (v > m || v != v) ? v : m;
  }
  m = t.max(m);
  const C mc = C(m);
  double sum = 0;
  for (int64_t j = t.first(); j < n; j += Team::kStride) sum += double(exp(s * cu::ld(xr + j) - mc));
  sum = t.sum(sum);
  if (logOut) {
    const C lse = C(m + log(sum));
    for (int64_t j = t.first(); j < cols; j += Team::kStride)
      cu::st(yr + j, j < n ? s * cu::ld(xr + j) - lse : -C(CUDART_INF));
  } else {
    const C inv = C(1.0 / sum);
    for (int64_t j = t.first(); j < cols; j += Team::kStride)
      cu::st(yr + j, j < n ? exp(s * cu::ld(xr + j) - mc) * inv : C(0));
  }
}

// softmax: dx = scale * y * (g - sum(g * y)); log-softmax: dx = scale * (g - exp(y) * sum(g)).
template <typename T, typename Team>
__device__ __forceinline__ void backwardRow(const Team& t, const T* y, const T* g, T* dx, int64_t r, int64_t cols,
                                            bool logOut, int64_t causalRows, double scale) {
  using C = typename cu::Acc<T>::type;
  const T* yr = y + r * cols;
  const T* gr = g + r * cols;
  T* dr = dx + r * cols;
  const int64_t n = visibleCols(r, cols, causalRows);
  double acc = 0;
  for (int64_t j = t.first(); j < n; j += Team::kStride)
    acc += logOut ? double(cu::ld(gr + j)) : double(cu::ld(gr + j)) * double(cu::ld(yr + j));
  const C total = C(t.sum(acc));
  const C s = C(scale);
  for (int64_t j = t.first(); j < cols; j += Team::kStride) {
    if (j >= n) {
      cu::st(dr + j, C(0));
      continue;
    }
    C yj = cu::ld(yr + j), gj = cu::ld(gr + j);
    cu::st(dr + j, logOut ? s * (gj - exp(yj) * total) : s * yj * (gj - total));
  }
}

// One block per row.
template <typename T>
__global__ void softmaxForward(const T* x, T* y, int64_t cols, bool logOut, int64_t causalRows, double scale) {
  __shared__ double buf[cu::kThreads];
  forwardRow(cu::BlockTeam{buf}, x, y, int64_t(blockIdx.x), cols, logOut, causalRows, scale);
}

template <typename T>
__global__ void softmaxBackward(const T* y, const T* g, T* dx, int64_t cols, bool logOut, int64_t causalRows,
                                double scale) {
  __shared__ double buf[cu::kThreads];
  backwardRow(cu::BlockTeam{buf}, y, g, dx, int64_t(blockIdx.x), cols, logOut, causalRows, scale);
}

// Rows of up to cu::kWarpCols columns: one warp per row.
template <typename T>
__global__ void softmaxForwardWarp(const T* x, T* y, int64_t rows, int64_t cols, bool logOut, int64_t causalRows,
                                   double scale) {
  const auto [r, lane, live] = cu::warpRow(rows);
  if (!live) return;
  forwardRow(cu::WarpTeam{lane}, x, y, r, cols, logOut, causalRows, scale);
}

template <typename T>
__global__ void softmaxBackwardWarp(const T* y, const T* g, T* dx, int64_t rows, int64_t cols, bool logOut,
                                    int64_t causalRows, double scale) {
  const auto [r, lane, live] = cu::warpRow(rows);
  if (!live) return;
  backwardRow(cu::WarpTeam{lane}, y, g, dx, r, cols, logOut, causalRows, scale);
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
