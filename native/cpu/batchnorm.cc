// Batch normalization over the channel dim of a dense activation viewed as [outer, C, inner]:
// NCHW-contiguous is [N, C, H*W], channels-last is [N*H*W, C, 1], so one kernel serves both.
// Per-channel statistics accumulate in double over fixed chunks of `outer` that are then
// combined in order, so results do not depend on the thread count. Statistics (mean, invstd, running
// stats, weight, bias and their gradients) are f64 for f64 inputs and f32 otherwise.
#include <algorithm>
#include <cmath>
#include <vector>
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

// Chunks of `outer` of about this many elements: small enough to stay in cache for a second
// pass, and fixed by the shape alone, so results do not depend on the thread count.
constexpr int64_t kChunkElems = 16384;
constexpr int64_t kParallelWork = 32768;

struct Geometry {
  int64_t outer, C, inner;
  int64_t count() const { return outer * inner; }  // elements per channel
  int64_t numel() const { return outer * C * inner; }
  int64_t rowsPerChunk() const { return std::max<int64_t>(1, kChunkElems / std::max<int64_t>(1, C * inner)); }
  int64_t chunks() const { return (outer + rowsPerChunk() - 1) / rowsPerChunk(); }
};

// Σ f(i) for i in [0, n) with eight running sums, so the loop vectorizes; the order is fixed.
template <typename F>
inline double sum8(int64_t n, F&& f) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) acc[k] += f(i + k);
  double tail = 0;
  for (; i < n; i++) tail += f(i);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// Count, mean and sum of squared deviations of some values; merged with Chan et al.'s formula.
struct Moments {
  double n = 0, mean = 0, m2 = 0;
  void merge(const Moments& b) {
    if (b.n == 0) return;
    const double n1 = n + b.n, d = b.mean - mean;
    mean += d * b.n / n1;
    m2 += b.m2 + d * d * n * b.n / n1;
    n = n1;
  }
};

// Per-channel moments of x, each chunk by two passes over cached data, chunks merged in order.
template <typename T>
std::vector<Moments> channelMoments(const Geometry& g, const T* x) {
  const int64_t K = g.chunks(), C = g.C, inner = g.inner, rows = g.rowsPerChunk();
  std::vector<Moments> part(size_t(K * C));
#pragma omp parallel for schedule(static) if (g.numel() > kParallelWork && K > 1)
  for (int64_t k = 0; k < K; k++) {
    const int64_t o0 = k * rows, o1 = std::min(g.outer, o0 + rows);
    Moments* m = part.data() + k * C;
    if (inner == 1) {
      std::vector<double> sum(static_cast<size_t>(C), 0.0), sq(static_cast<size_t>(C), 0.0);
      for (int64_t o = o0; o < o1; o++)
        for (int64_t c = 0; c < C; c++) sum[c] += double(load(x + o * C + c));
      const double n = double(o1 - o0);
      for (int64_t c = 0; c < C; c++) sum[c] /= n;
      for (int64_t o = o0; o < o1; o++)
        for (int64_t c = 0; c < C; c++) {
          const double d = double(load(x + o * C + c)) - sum[c];
          sq[c] += d * d;
        }
      for (int64_t c = 0; c < C; c++) m[c] = Moments{n, sum[c], sq[c]};
    } else {
      for (int64_t o = o0; o < o1; o++)
        for (int64_t c = 0; c < C; c++) {
          const T* p = x + (o * C + c) * inner;
          const double mean = sum8(inner, [&](int64_t i) { return double(load(p + i)); }) / double(inner);
          const double q = sum8(inner, [&](int64_t i) {
            const double d = double(load(p + i)) - mean;
            return d * d;
          });
          m[c].merge(Moments{double(inner), mean, q});
        }
    }
  }
  std::vector<Moments> out(static_cast<size_t>(C));
  for (int64_t k = 0; k < K; k++)
    for (int64_t c = 0; c < C; c++) out[c].merge(part[k * C + c]);
  return out;
}

// Per channel, Σ gy and Σ gy·(x − mean), in one pass; chunk partials added in order.
template <typename T, typename S>
void gradSums(const Geometry& g, const T* gy, const T* x, const S* mean, std::vector<double>& sumGy,
              std::vector<double>& sumGyXc) {
  const int64_t K = g.chunks(), C = g.C, inner = g.inner, rows = g.rowsPerChunk();
  std::vector<double> part(size_t(2 * K * C), 0.0);
#pragma omp parallel for schedule(static) if (g.numel() > kParallelWork && K > 1)
  for (int64_t k = 0; k < K; k++) {
    const int64_t o0 = k * rows, o1 = std::min(g.outer, o0 + rows);
    double* a = part.data() + 2 * k * C;
    double* b = a + C;
    for (int64_t o = o0; o < o1; o++) {
      if (inner == 1) {
        for (int64_t c = 0; c < C; c++) {
          const double v = double(load(gy + o * C + c));
          a[c] += v;
          b[c] += v * (double(load(x + o * C + c)) - double(mean[c]));
        }
      } else {
        for (int64_t c = 0; c < C; c++) {
          const T* pg = gy + (o * C + c) * inner;
          const T* px = x + (o * C + c) * inner;
          const double mu = double(mean[c]);
          a[c] += sum8(inner, [&](int64_t i) { return double(load(pg + i)); });
          b[c] += sum8(inner, [&](int64_t i) { return double(load(pg + i)) * (double(load(px + i)) - mu); });
        }
      }
    }
  }
  sumGy.assign(size_t(C), 0.0);
  sumGyXc.assign(size_t(C), 0.0);
  for (int64_t k = 0; k < K; k++)
    for (int64_t c = 0; c < C; c++) {
      sumGy[c] += part[2 * k * C + c];
      sumGyXc[c] += part[2 * k * C + C + c];
    }
}

// out = a[c]·u + b[c]·v + d[c] per element (v may be null): the forward affine map and the input
// gradient share it. Channels-last rows run with channels innermost.
template <typename T>
void channelAffine(const Geometry& g, const T* u, const T* v, T* out, const std::vector<double>& a,
                   const std::vector<double>& b, const std::vector<double>& d) {
  using Cm = typename Compute<T>::type;
  const int64_t C = g.C, inner = g.inner;
  std::vector<Cm> ca(a.begin(), a.end()), cb(b.begin(), b.end()), cd(d.begin(), d.end());
#pragma omp parallel for schedule(static) if (g.numel() > kParallelWork)
  for (int64_t o = 0; o < g.outer; o++) {
    if (inner == 1) {
      const T* pu = u + o * C;
      T* po = out + o * C;
      if (v) {
        const T* pv = v + o * C;
        for (int64_t c = 0; c < C; c++) store(po + c, ca[c] * load(pu + c) + cb[c] * load(pv + c) + cd[c]);
      } else {
        for (int64_t c = 0; c < C; c++) store(po + c, ca[c] * load(pu + c) + cd[c]);
      }
      continue;
    }
    for (int64_t c = 0; c < C; c++) {
      const int64_t base = (o * C + c) * inner;
      const Cm ac = ca[c], bc = cb[c], dc = cd[c];
      if (v) {
        for (int64_t i = 0; i < inner; i++) store(out + base + i, ac * load(u + base + i) + bc * load(v + base + i) + dc);
      } else {
        for (int64_t i = 0; i < inner; i++) store(out + base + i, ac * load(u + base + i) + dc);
      }
    }
  }
}

template <typename T, typename S>
void forwardKernel(const Geometry& g, const T* x, T* y, const S* weight, const S* bias, S* mean,
                   S* invstd, S* runMean, S* runVar, bool training, double momentum, double eps) {
  const int64_t C = g.C;
  std::vector<double> mu(static_cast<size_t>(C)), inv(static_cast<size_t>(C));
  if (training) {
    const std::vector<Moments> m = channelMoments(g, x);
    const double n = double(g.count());
    std::vector<double> ss(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; c++) mu[c] = m[c].mean, ss[c] = m[c].m2;
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
  channelAffine<T>(g, x, nullptr, y, scale, std::vector<double>(static_cast<size_t>(C), 0.0), shift);
}

// Training: gx = w·invstd·(gy − mean(gy) − x̂·mean(gy·x̂)); eval: gx = w·invstd·gy.
// gradWeight = Σ gy·x̂, gradBias = Σ gy in both modes.
template <typename T, typename S>
void backwardKernel(const Geometry& g, const T* gy, const T* x, const S* mean, const S* invstd,
                    const S* weight, T* gx, S* gradWeight, S* gradBias, bool training) {
  const int64_t C = g.C;
  std::vector<double> sumGy, sumGyXhat;
  gradSums(g, gy, x, mean, sumGy, sumGyXhat);
  for (int64_t c = 0; c < C; c++) sumGyXhat[c] *= double(invstd[c]);
  for (int64_t c = 0; c < C; c++) {
    if (gradWeight) gradWeight[c] = S(sumGyXhat[c]);
    if (gradBias) gradBias[c] = S(sumGy[c]);
  }
  if (!gx) return;
  // gx = a·gy + b·x + d per channel (x̂ expanded), one fused pass.
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
  channelAffine<T>(g, gy, training ? x : nullptr, gx, a, b, d);
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
