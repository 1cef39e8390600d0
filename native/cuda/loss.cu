// Cross-entropy of [rows, C] logits against class targets, log-softmax and NLL fused: forward
// (loss and log-sum-exp per row, in double), backward (softmax - one_hot, times the gradient).
// Ignored rows give 0. Rows of x and dx may lie at a padded pitch (xLd, dxLd >= C: a matmul output
// with 16-byte aligned rows); only the C columns are read or written. Reference: native/cpu/loss.cc.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace mt {
namespace {

template <typename T>
using Stat = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T, typename I>
__global__ void forwardRows(const T* x, int64_t C, int64_t xLd, const I* t, int64_t ignore, T* loss, Stat<T>* lse) {
  __shared__ double buf[cu::kThreads];
  const int64_t r = blockIdx.x;
  const int64_t target = int64_t(t[r]);
  if (target == ignore) {
    if (threadIdx.x == 0) {
      cu::st(loss + r, 0.0);
      lse[r] = Stat<T>(0);
    }
    return;
  }
  const T* xr = x + r * xLd;
  double m = -CUDART_INF;
  for (int64_t j = threadIdx.x; j < C; j += cu::kThreads) {
    double v = double(cu::ld(xr + j));
    m = (v > m || v != v) ? v : m;
  }
  m = cu::blockReduce<true>(m, buf);
  using Cp = typename cu::Acc<T>::type;
  double s = 0;
  for (int64_t j = threadIdx.x; j < C; j += cu::kThreads) s += double(exp(cu::ld(xr + j) - Cp(m)));
  s = cu::blockReduce<false>(s, buf);
  if (threadIdx.x == 0) {
    const double l = m + log(s);
    lse[r] = Stat<T>(l);
    // A target outside [0, C) was flagged by the device-side check (index_check.cu): read nothing.
    cu::st(loss + r, target >= 0 && target < C ? l - double(cu::ld(xr + target)) : double(CUDART_NAN));
  }
}

template <typename T, typename I>
__global__ void backwardRows(const T* x, int64_t C, int64_t xLd, const I* t, int64_t ignore, const Stat<T>* lse,
                             const T* g, int64_t gStride, double scale, T* dx, int64_t dxLd) {
  using Cp = typename cu::Acc<T>::type;
  const int64_t r = blockIdx.x;
  const int64_t target = int64_t(t[r]);
  T* dr = dx + r * dxLd;
  if (target == ignore) {
    for (int64_t j = threadIdx.x; j < C; j += cu::kThreads) cu::st(dr + j, Cp(0));
    return;
  }
  const T* xr = x + r * xLd;
  const Cp gr = Cp(double(cu::ld(g + r * gStride)) * scale);
  const Cp l = Cp(lse[r]);
  for (int64_t j = threadIdx.x; j < C; j += cu::kThreads) {
    Cp v = gr * exp(Cp(cu::ld(xr + j) - l));
    if (j == target) v -= gr;
    cu::st(dr + j, v);
  }
}

void checkRows(int64_t rows) {
  if (rows > (int64_t(1) << 31) - 1) cu::fail("crossEntropy: more than 2^31 rows");
}

// A row pitch: 0 means C (contiguous rows); anything else at least C.
int64_t pitchOf(int64_t ld, int64_t C, const char* what) {
  if (ld == 0) return C;
  if (ld < C) cu::fail(std::string("crossEntropy: ") + what + " row pitch " + std::to_string(ld) + " is below C = " + std::to_string(C));
  return ld;
}

}  // namespace

#define MT_CU_INDEX(D, OP, ...)                                    \
  switch (D) {                                                     \
    case cu::I32: { using I = int32_t; __VA_ARGS__; break; }        \
    case cu::I64: { using I = int64_t; __VA_ARGS__; break; }        \
    default: cu::fail(std::string(OP) + ": indices must be i32 or i64"); \
  }

void cudaCrossEntropyForward(int dev, int dtype, const void* x, int64_t rows, int64_t C, int idDtype, const void* t,
                             int64_t ignore, void* loss, void* lse, int64_t xLd) {
  checkRows(rows);
  xLd = pitchOf(xLd, C, "logits");
  if (rows == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "crossEntropy", MT_CU_INDEX(idDtype, "crossEntropy", {
    auto forward = forwardRows<T, I>;
    MT_LAUNCH(forward, unsigned(rows), cu::kThreads, 0, s, static_cast<const T*>(x), C, xLd, static_cast<const I*>(t), ignore,
              static_cast<T*>(loss), static_cast<Stat<T>*>(lse));
  }));
  cu::checkLaunch("crossEntropyForward");
}

void cudaCrossEntropyBackward(int dev, int dtype, const void* x, int64_t rows, int64_t C, int idDtype, const void* t,
                              int64_t ignore, const void* lse, const void* g, int64_t gStride, double scale, void* dx,
                              int64_t xLd, int64_t dxLd) {
  checkRows(rows);
  xLd = pitchOf(xLd, C, "logits");
  dxLd = pitchOf(dxLd, C, "gradient");
  if (rows * C == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "crossEntropy backward", MT_CU_INDEX(idDtype, "crossEntropy backward", {
    auto backward = backwardRows<T, I>;
    MT_LAUNCH(backward, unsigned(rows), cu::kThreads, 0, s, static_cast<const T*>(x), C, xLd, static_cast<const I*>(t), ignore,
              static_cast<const Stat<T>*>(lse), static_cast<const T*>(g),
              gStride, scale, static_cast<T*>(dx), dxLd);
  }));
  cu::checkLaunch("crossEntropyBackward");
}

}  // namespace mt
