// Batch normalization over the channel dim of a dense activation viewed as [outer, C, inner]:
// NCHW-contiguous is [N, C, H*W], channels-last is [N*H*W, C, 1], so one kernel serves both.
// Per-channel sums accumulate in double over fixed chunks of `outer` that are then added in
// order, so results do not depend on the thread count. Statistics (mean, invstd, running
// stats, weight, bias and their gradients) are f64 for f64 inputs and f32 otherwise.
#include <algorithm>
#include <cmath>
#include <vector>
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

constexpr int64_t kMaxChunks = 64;
constexpr int64_t kParallelWork = 32768;

struct Geometry {
  int64_t outer, C, inner;
  int64_t count() const { return outer * inner; }  // elements per channel
  int64_t numel() const { return outer * C * inner; }
  int64_t chunks() const { return std::min(outer, kMaxChunks); }
};

// part[k * C + c] = Σ over chunk k of f(value at (o, c, i), c), for each channel.
template <typename F>
void chunkedChannelSums(const Geometry& g, std::vector<double>& part, F&& f) {
  const int64_t K = g.chunks(), C = g.C, inner = g.inner;
  part.assign(size_t(K * C), 0.0);
#pragma omp parallel for schedule(static) if (g.numel() > kParallelWork && K > 1)
  for (int64_t k = 0; k < K; k++) {
    const int64_t o0 = g.outer * k / K, o1 = g.outer * (k + 1) / K;
    double* acc = part.data() + k * C;
    for (int64_t o = o0; o < o1; o++) {
      if (inner == 1) {
        for (int64_t c = 0; c < C; c++) acc[c] += f(o * C + c, c);
      } else {
        for (int64_t c = 0; c < C; c++) {
          const int64_t base = (o * C + c) * inner;
          double s = 0;
          for (int64_t i = 0; i < inner; i++) s += f(base + i, c);
          acc[c] += s;
        }
      }
    }
  }
}

// Adds the chunk partials in chunk order.
std::vector<double> total(const Geometry& g, const std::vector<double>& part) {
  std::vector<double> out(size_t(g.C), 0.0);
  for (int64_t k = 0; k < g.chunks(); k++)
    for (int64_t c = 0; c < g.C; c++) out[c] += part[k * g.C + c];
  return out;
}

// y = x * scale[c] + shift[c].
template <typename T, typename S>
void affine(const Geometry& g, const T* x, T* y, const std::vector<S>& scale, const std::vector<S>& shift) {
  using C = typename Compute<T>::type;
  const int64_t Cn = g.C, inner = g.inner;
#pragma omp parallel for schedule(static) if (g.numel() > kParallelWork)
  for (int64_t o = 0; o < g.outer; o++) {
    for (int64_t c = 0; c < Cn; c++) {
      const int64_t base = (o * Cn + c) * inner;
      const C a = C(scale[c]), b = C(shift[c]);
      for (int64_t i = 0; i < inner; i++) store(y + base + i, load(x + base + i) * a + b);
    }
  }
}

template <typename T, typename S>
void forwardKernel(const Geometry& g, const T* x, T* y, const S* weight, const S* bias, S* mean,
                   S* invstd, S* runMean, S* runVar, bool training, double momentum, double eps) {
  const int64_t C = g.C;
  std::vector<double> mu(static_cast<size_t>(C)), inv(static_cast<size_t>(C));
  if (training) {
    std::vector<double> part;
    chunkedChannelSums(g, part, [&](int64_t at, int64_t) { return double(load(x + at)); });
    mu = total(g, part);
    const double n = double(g.count());
    for (auto& m : mu) m /= n;
    // Two passes: the squared deviations from the exact mean lose nothing to cancellation.
    chunkedChannelSums(g, part, [&](int64_t at, int64_t c) {
      const double d = double(load(x + at)) - mu[c];
      return d * d;
    });
    std::vector<double> ss = total(g, part);
    for (int64_t c = 0; c < C; c++) {
      const double var = ss[c] / n;
      inv[c] = 1.0 / std::sqrt(var + eps);
      if (runMean) runMean[c] = S((1 - momentum) * double(runMean[c]) + momentum * mu[c]);
      // The running variance takes the unbiased estimate, as PyTorch does.
      if (runVar) runVar[c] = S((1 - momentum) * double(runVar[c]) + momentum * ss[c] / (n - 1));
    }
  } else {
    for (int64_t c = 0; c < C; c++) {
      mu[c] = double(runMean[c]);
      inv[c] = 1.0 / std::sqrt(double(runVar[c]) + eps);
    }
  }
  std::vector<double> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; c++) {
    mean[c] = S(mu[c]);
    invstd[c] = S(inv[c]);
    const double w = weight ? double(weight[c]) : 1.0, b = bias ? double(bias[c]) : 0.0;
    scale[c] = w * inv[c];
    shift[c] = b - mu[c] * scale[c];
  }
  affine(g, x, y, scale, shift);
}

// Training: gx = w·invstd·(gy − mean(gy) − x̂·mean(gy·x̂)); eval: gx = w·invstd·gy.
// gradWeight = Σ gy·x̂, gradBias = Σ gy in both modes.
template <typename T, typename S>
void backwardKernel(const Geometry& g, const T* gy, const T* x, const S* mean, const S* invstd,
                    const S* weight, T* gx, S* gradWeight, S* gradBias, bool training) {
  const int64_t C = g.C;
  std::vector<double> part;
  chunkedChannelSums(g, part, [&](int64_t at, int64_t) { return double(load(gy + at)); });
  const std::vector<double> sumGy = total(g, part);
  chunkedChannelSums(g, part, [&](int64_t at, int64_t c) {
    return double(load(gy + at)) * (double(load(x + at)) - double(mean[c]));
  });
  std::vector<double> sumGyXhat = total(g, part);
  for (int64_t c = 0; c < C; c++) sumGyXhat[c] *= double(invstd[c]);
  for (int64_t c = 0; c < C; c++) {
    if (gradWeight) gradWeight[c] = S(sumGyXhat[c]);
    if (gradBias) gradBias[c] = S(sumGy[c]);
  }
  if (!gx) return;
  // gx = a·gy + b·x + d per channel (x̂ expanded), one fused pass.
  using Cm = typename Compute<T>::type;
  const double n = double(g.count());
  std::vector<double> a(static_cast<size_t>(C)), b(static_cast<size_t>(C)), d(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; c++) {
    const double is = double(invstd[c]), w = weight ? double(weight[c]) : 1.0;
    a[c] = w * is;
    if (training) {
      const double k = w * is * is * sumGyXhat[c] / n;  // coefficient of (x − mean)
      b[c] = -k;
      d[c] = k * double(mean[c]) - a[c] * sumGy[c] / n;
    } else {
      b[c] = 0;
      d[c] = 0;
    }
  }
  const int64_t inner = g.inner;
#pragma omp parallel for schedule(static) if (g.numel() > kParallelWork)
  for (int64_t o = 0; o < g.outer; o++) {
    for (int64_t c = 0; c < C; c++) {
      const int64_t base = (o * C + c) * inner;
      const Cm ac = Cm(a[c]), bc = Cm(b[c]), dc = Cm(d[c]);
      for (int64_t i = 0; i < inner; i++)
        store(gx + base + i, ac * load(gy + base + i) + bc * load(x + base + i) + dc);
    }
  }
}

// A statistics array (C values of S) or nullptr when its id is 0.
template <typename S>
S* statPtr(const Napi::CallbackInfo& info, size_t idArg, int64_t C) {
  int64_t id = argInt(info, idArg);
  return id ? dataPtr<S>(id, argInt(info, idArg + 1), C) : nullptr;
}

Geometry readGeometry(const Napi::CallbackInfo& info, size_t at, const char* op) {
  Geometry g{argInt(info, at), argInt(info, at + 1), argInt(info, at + 2)};
  MT_CHECK(g.outer >= 0 && g.C > 0 && g.inner >= 0, op, ": bad geometry [", g.outer, ", ", g.C, ", ", g.inner, "]");
  return g;
}

template <typename T>
void forwardTyped(const Napi::CallbackInfo& info, const Geometry& g) {
  using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t C = g.C;
  const T* x = dataPtr<T>(argInt(info, 1), argInt(info, 2), g.numel());
  T* y = dataPtr<T>(argInt(info, 3), argInt(info, 4), g.numel());
  S* mean = statPtr<S>(info, 12, C);
  S* invstd = statPtr<S>(info, 14, C);
  S* runMean = statPtr<S>(info, 16, C);
  S* runVar = statPtr<S>(info, 18, C);
  bool training = argBool(info, 20);
  MT_CHECK(mean && invstd, "batchNormForward: mean and invstd outputs are required");
  MT_CHECK(training || (runMean && runVar), "batchNormForward: evaluation needs running statistics");
  MT_CHECK(!training || g.count() > 1, "batchNormForward: training needs more than one value per channel");
  forwardKernel<T, S>(g, x, y, statPtr<S>(info, 8, C), statPtr<S>(info, 10, C), mean, invstd, runMean,
                      runVar, training, argNum(info, 21), argNum(info, 22));
}

// batchNormForward(dtype, xId, xOff, outId, outOff, outer, C, inner, weightId, weightOff,
//                  biasId, biasOff, meanId, meanOff, invstdId, invstdOff, runMeanId, runMeanOff,
//                  runVarId, runVarOff, training, momentum, eps)
// x and out share one dense [outer, C, inner] layout. Writes out, mean and invstd (the values
// used: batch statistics when training, running ones otherwise) and, when training, updates the
// running statistics in place. Ids of 0: no weight / bias / running statistics.
Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  Geometry g = readGeometry(info, 5, "batchNormForward");
  MT_DISPATCH_FLOAT(d, "batchNormForward", forwardTyped<T>(info, g));
  return info.Env().Undefined();
}

template <typename T>
void backwardTyped(const Napi::CallbackInfo& info, const Geometry& g) {
  using S = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t C = g.C;
  const T* gy = dataPtr<T>(argInt(info, 1), argInt(info, 2), g.numel());
  const T* x = dataPtr<T>(argInt(info, 3), argInt(info, 4), g.numel());
  const S* mean = statPtr<S>(info, 5, C);
  const S* invstd = statPtr<S>(info, 7, C);
  const S* weight = statPtr<S>(info, 9, C);
  int64_t gxId = argInt(info, 11);
  T* gx = gxId ? dataPtr<T>(gxId, argInt(info, 12), g.numel()) : nullptr;
  MT_CHECK(mean && invstd, "batchNormBackward: mean and invstd are required");
  backwardKernel<T, S>(g, gy, x, mean, invstd, weight, gx, statPtr<S>(info, 13, C),
                       statPtr<S>(info, 15, C), argBool(info, 20));
}

// batchNormBackward(dtype, gradOutId, gradOutOff, xId, xOff, meanId, meanOff, invstdId,
//                   invstdOff, weightId, weightOff, gradInId, gradInOff, gradWeightId,
//                   gradWeightOff, gradBiasId, gradBiasOff, outer, C, inner, training)
// gradOut, x and gradIn share one dense [outer, C, inner] layout. Writes (never accumulates)
// the gradients whose ids are not 0.
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  Geometry g = readGeometry(info, 17, "batchNormBackward");
  MT_DISPATCH_FLOAT(d, "batchNormBackward", backwardTyped<T>(info, g));
  return info.Env().Undefined();
}

}  // namespace

void registerBatchNorm(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "batchNormForward", BatchNormForward);
  MT_EXPORT(exports, "batchNormBackward", BatchNormBackward);
}

}  // namespace mt
