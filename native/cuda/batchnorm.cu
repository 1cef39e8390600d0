// Batch normalization over the channel dim of a dense activation viewed as [outer, C, inner]
// (NCHW: [N, C, H*W]; channels-last: [N*H*W, C, 1]). One block per channel: its threads sum
// fixed slices of the channel's values in double, combined by a fixed tree (two passes for the
// variance, as on the CPU), then the same block writes the normalized values or the input
// gradient. Deterministic; no atomics. Reference: native/cpu/batchnorm.cc.
#include "cuda/common.cuh"
#include "cuda/image_ops.h"
#include "cuda/runtime.h"

namespace mt {
namespace {

template <typename T>
using Stat = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Element e of channel c's outer * inner values.
__device__ __forceinline__ int64_t at(int64_t e, int64_t c, int64_t C, int64_t inner) {
  return ((e / inner) * C + c) * inner + e % inner;
}

template <typename T>
__global__ void forwardKernel(const T* x, T* y, int64_t C, int64_t inner, int64_t count, const Stat<T>* weight,
                              const Stat<T>* bias, Stat<T>* mean, Stat<T>* invstd, Stat<T>* runMean, Stat<T>* runVar,
                              bool training, double momentum, double eps) {
  using A = typename cu::Acc<T>::type;
  __shared__ double buf[cu::kThreads];
  const int64_t c = blockIdx.x;
  double mu, inv;
  if (training) {
    double s = 0;
    for (int64_t e = threadIdx.x; e < count; e += cu::kThreads) s += double(cu::ld(x + at(e, c, C, inner)));
    mu = cu::blockReduce<false>(s, buf) / double(count);
    double q = 0;
    for (int64_t e = threadIdx.x; e < count; e += cu::kThreads) {
      const double d = double(cu::ld(x + at(e, c, C, inner))) - mu;
      q += d * d;
    }
    const double ss = cu::blockReduce<false>(q, buf);
    inv = 1.0 / sqrt(ss / double(count) + eps);
    if (threadIdx.x == 0) {
      if (runMean) runMean[c] = Stat<T>((1 - momentum) * double(runMean[c]) + momentum * mu);
      if (runVar) runVar[c] = Stat<T>((1 - momentum) * double(runVar[c]) + momentum * ss / double(count - 1));
    }
  } else {
    mu = double(runMean[c]);
    inv = 1.0 / sqrt(double(runVar[c]) + eps);
  }
  if (threadIdx.x == 0) {
    mean[c] = Stat<T>(mu);
    invstd[c] = Stat<T>(inv);
  }
  const double scale = (weight ? double(weight[c]) : 1.0) * inv;
  const double shift = (bias ? double(bias[c]) : 0.0) - mu * scale;
  const A a = A(scale), d = A(shift);
  for (int64_t e = threadIdx.x; e < count; e += cu::kThreads) {
    const int64_t i = at(e, c, C, inner);
    cu::st(y + i, a * cu::ld(x + i) + d);
  }
}

// Training: gx = w·invstd·(gy − mean(gy) − x̂·mean(gy·x̂)); eval: gx = w·invstd·gy.
// gradWeight = Σ gy·x̂, gradBias = Σ gy in both modes.
template <typename T>
__global__ void backwardKernel(const T* gy, const T* x, const Stat<T>* mean, const Stat<T>* invstd,
                               const Stat<T>* weight, T* gx, Stat<T>* gw, Stat<T>* gb, int64_t C, int64_t inner,
                               int64_t count, bool training) {
  using A = typename cu::Acc<T>::type;
  __shared__ double buf[cu::kThreads];
  const int64_t c = blockIdx.x;
  const double mu = double(mean[c]), is = double(invstd[c]);
  double sg = 0, sgx = 0;
  for (int64_t e = threadIdx.x; e < count; e += cu::kThreads) {
    const int64_t i = at(e, c, C, inner);
    const double g = double(cu::ld(gy + i));
    sg += g;
    sgx += g * (double(cu::ld(x + i)) - mu);
  }
  const double sumGy = cu::blockReduce<false>(sg, buf);
  const double sumGyXhat = cu::blockReduce<false>(sgx, buf) * is;
  if (threadIdx.x == 0) {
    if (gw) gw[c] = Stat<T>(sumGyXhat);
    if (gb) gb[c] = Stat<T>(sumGy);
  }
  if (!gx) return;
  const double n = double(count), w = weight ? double(weight[c]) : 1.0;
  const double a = w * is;
  const double k = training ? w * is * is * sumGyXhat / n : 0.0;  // coefficient of (x − mean)
  const double d = training ? k * mu - a * sumGy / n : 0.0;
  const A ca = A(a), cb = A(-k), cd = A(d);
  for (int64_t e = threadIdx.x; e < count; e += cu::kThreads) {
    const int64_t i = at(e, c, C, inner);
    A v = ca * cu::ld(gy + i) + cd;
    if (training) v = ca * cu::ld(gy + i) + cb * cu::ld(x + i) + cd;
    cu::st(gx + i, v);
  }
}

void checkGeometry(const char* op, int64_t outer, int64_t C, int64_t inner) {
  if (outer < 0 || C <= 0 || inner < 0) cu::fail(std::string(op) + ": bad geometry");
  if (C > 0x7fffffff) cu::fail(std::string(op) + ": more than 2^31 channels");
}

}  // namespace

void cudaBatchNormForward(int dev, int dtype, const void* x, void* y, int64_t outer, int64_t C, int64_t inner,
                          const void* weight, const void* bias, void* mean, void* invstd, void* runMean, void* runVar,
                          bool training, double momentum, double eps) {
  checkGeometry("batchNormForward", outer, C, inner);
  const int64_t count = outer * inner;
  if (training && count <= 1) cu::fail("batchNormForward: training needs more than one value per channel");
  if (!training && (!runMean || !runVar)) cu::fail("batchNormForward: evaluation needs running statistics");
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "batchNormForward", {
    using S = Stat<T>;
    auto k = forwardKernel<T>;
    MT_LAUNCH(k, unsigned(C), cu::kThreads, 0, s, static_cast<const T*>(x), static_cast<T*>(y), C, inner, count,
              static_cast<const S*>(weight), static_cast<const S*>(bias), static_cast<S*>(mean), static_cast<S*>(invstd),
              static_cast<S*>(runMean), static_cast<S*>(runVar), training, momentum, eps);
  });
  cu::checkLaunch("batchNormForward");
}

void cudaBatchNormBackward(int dev, int dtype, const void* gy, const void* x, const void* mean, const void* invstd,
                           const void* weight, void* gx, void* gw, void* gb, int64_t outer, int64_t C, int64_t inner,
                           bool training) {
  checkGeometry("batchNormBackward", outer, C, inner);
  if (!gx && !gw && !gb) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "batchNormBackward", {
    using S = Stat<T>;
    auto k = backwardKernel<T>;
    MT_LAUNCH(k, unsigned(C), cu::kThreads, 0, s, static_cast<const T*>(gy), static_cast<const T*>(x),
              static_cast<const S*>(mean), static_cast<const S*>(invstd), static_cast<const S*>(weight),
              static_cast<T*>(gx), static_cast<S*>(gw), static_cast<S*>(gb), C, inner, outer * inner, training);
  });
  cu::checkLaunch("batchNormBackward");
}

}  // namespace mt
