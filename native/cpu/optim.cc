// Fused optimizer updates over one flat range: param, grad and state are read once and written
// once per element. A range is a whole parameter, a run of adjacent parameters in one flat
// storage, or (for ZeRO) a rank's partition of flat buffers. Also the gradient-norm reduction.
//
// Buffers: the param (P: f32/f64/bf16/f16), its grad (G: any float dtype), the states (S: f32 or
// f64) and an optional master copy of the param in S (for 16-bit params: the update runs on the
// master and the param receives it rounded). Arithmetic runs in S, as PyTorch runs it in the
// param's dtype; scalars derived from hyperparameters are computed in double first.
#include <cmath>
#include <limits>
#include <vector>
#include "tensor/storage.h"
#include "util/args.h"
#include "util/grad_scale.h"
#include "util/parallel.h"

namespace mt {
namespace {

constexpr int64_t kChunk = 4096;  // elements per parallel work item

// The weight is read from the master copy (kMaster) or the param; the param always receives it.
template <bool kMaster, typename P, typename S>
inline S getWeight(const P* param, const S* master, int64_t i) {
  if constexpr (kMaster) return master[i];
  else return S(load(param + i));
}
template <bool kMaster, typename P, typename S>
inline void setWeight(P* param, S* master, int64_t i, S v) {
  if constexpr (kMaster) master[i] = v;
  store(param + i, v);
}

template <typename F>
void chunked(int64_t n, int64_t costPerItem, F&& body) {
  int64_t chunks = (n + kChunk - 1) / kChunk;
  parallelFor(chunks, kChunk * costPerItem, [&](int64_t c) {
    int64_t lo = c * kChunk, hi = lo + kChunk < n ? lo + kChunk : n;
    body(lo, hi);
  });
}

struct SgdHyper {
  double lr, momentum, dampening, weightDecay;
  bool nesterov, maximize, firstStep;
  double gradScale;  // multiplies the gradient in S (mixed precision's unscale and clip)
};

// Loop-invariant scalars in the compute type. Options are arithmetic, not branches, so the
// loops vectorize: sign is gradScale (negated to maximize), wd is 0 without weight decay (g + 0*p == g).
template <typename S>
struct SgdScalars {
  S lr, mom, damp, wd, sign;
  bool nesterov, first;
};

// torch.optim.SGD: g += wd*p; buf = g on the first step, else momentum*buf + (1-dampening)*g;
// nesterov: g += momentum*buf, else g = buf; p -= lr*g.
template <bool kMaster, bool kBuf, typename P, typename G, typename S>
void sgdRange(P* __restrict param, S* __restrict master, const G* __restrict grad, S* __restrict buf, int64_t lo,
              int64_t hi, const SgdScalars<S> c) {
  for (int64_t i = lo; i < hi; i++) {
    S p = getWeight<kMaster>(param, master, i);
    S g = S(load(grad + i)) * c.sign + c.wd * p;
    if constexpr (kBuf) {
      S old = buf[i];
      S b = c.first ? g : c.mom * old + c.damp * g;
      buf[i] = b;
      g = c.nesterov ? g + c.mom * b : b;
    }
    setWeight<kMaster>(param, master, i, p - c.lr * g);
  }
}

template <typename P, typename G, typename S>
void sgdKernel(P* param, S* master, const G* grad, S* buf, int64_t n, const SgdHyper& h) {
  const SgdScalars<S> c{S(h.lr), S(h.momentum), S(1.0 - h.dampening), S(h.weightDecay), S(h.maximize ? -h.gradScale : h.gradScale),
                        h.nesterov, h.firstStep};
  chunked(n, 4, [&](int64_t lo, int64_t hi) {
    if (master && buf) sgdRange<true, true>(param, master, grad, buf, lo, hi, c);
    else if (master) sgdRange<true, false>(param, master, grad, buf, lo, hi, c);
    else if (buf) sgdRange<false, true>(param, master, grad, buf, lo, hi, c);
    else sgdRange<false, false>(param, master, grad, buf, lo, hi, c);
  });
}

struct AdamHyper {
  double lr, beta1, beta2, eps, weightDecay;
  int64_t step;
  bool decoupled, maximize;
  double gradScale;  // multiplies the gradient in S (mixed precision's unscale and clip)
};

// decay is 1 for Adam, wdL2 is 0 for AdamW (both exact no-ops); sign is gradScale (negated to maximize).
template <typename S>
struct AdamScalars {
  S b1, b2, omb1, omb2, negStep, bc2Sqrt, eps, wdL2, decay, sign;
};

// torch.optim.Adam / AdamW (no amsgrad): AdamW first scales p by (1 - lr*wd), Adam adds wd*p to
// the gradient; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), bc_k = 1 - b_k^step.
// This file builds with -fno-math-errno (CMakeLists.txt): with errno, sqrt blocks vectorization.
template <bool kMaster, typename P, typename G, typename S>
void adamRange(P* __restrict param, S* __restrict master, const G* __restrict grad, S* __restrict m,
               S* __restrict v, int64_t lo, int64_t hi, const AdamScalars<S> c) {
  for (int64_t i = lo; i < hi; i++) {
    S p = getWeight<kMaster>(param, master, i) * c.decay;
    S g = S(load(grad + i)) * c.sign + c.wdL2 * p;
    S mi = m[i] * c.b1 + c.omb1 * g;
    S vi = v[i] * c.b2 + c.omb2 * g * g;
    m[i] = mi;
    v[i] = vi;
    S denom = std::sqrt(vi) / c.bc2Sqrt + c.eps;
    setWeight<kMaster>(param, master, i, p + c.negStep * mi / denom);
  }
}

template <typename P, typename G, typename S>
void adamKernel(P* param, S* master, const G* grad, S* m, S* v, int64_t n, const AdamHyper& h) {
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, double(h.step));
  const AdamScalars<S> c{S(h.beta1), S(h.beta2), S(1.0 - h.beta1), S(1.0 - h.beta2), S(-h.lr / bc1),
                         S(std::sqrt(bc2)), S(h.eps), S(h.decoupled ? 0.0 : h.weightDecay),
                         S(h.decoupled ? 1.0 - h.lr * h.weightDecay : 1.0),
                         S(h.maximize ? -h.gradScale : h.gradScale)};
  chunked(n, 8, [&](int64_t lo, int64_t hi) {
    if (master) adamRange<true>(param, master, grad, m, v, lo, hi, c);
    else adamRange<false>(param, master, grad, m, v, lo, hi, c);
  });
}

// A (dtype, storage id, element offset) triple of N-API arguments starting at `i`.
struct Buf {
  DType dtype;
  int64_t id, off;
};
Buf argBuf(const Napi::CallbackInfo& info, size_t i) {
  return Buf{toDType(int(argInt(info, i))), argInt(info, i + 1), argInt(info, i + 2)};
}

template <typename T>
T* ptrOrNull(int64_t id, int64_t off, int64_t n) {
  return id < 0 ? nullptr : dataPtr<T>(id, off, n);
}

bool isStateDType(DType d) { return d == DType::F32 || d == DType::F64; }

// Binds P (param), G (grad) and S (state) to C++ types and calls BODY.
#define MT_DISPATCH_PGS(PD, GD, SD, OP, ...)                                                  \
  MT_DISPATCH_FLOAT(PD, OP, {                                                                \
    using P = T;                                                                             \
    MT_DISPATCH_FLOAT(GD, OP, {                                                              \
      using G = T;                                                                           \
      if (SD == DType::F32) {                                                                \
        using S = float;                                                                     \
        __VA_ARGS__;                                                                         \
      } else {                                                                               \
        using S = double;                                                                    \
        __VA_ARGS__;                                                                         \
      }                                                                                      \
    });                                                                                      \
  })

// sgdStep(param: dtype,id,off, grad: dtype,id,off, stateDtype, bufId, bufOff, masterId,
//         masterOff, n, lr, momentum, dampening, weightDecay, nesterov, maximize, firstStep[, gradScale])
// bufId -1: no momentum buffer; masterId -1: no master copy.
Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  Buf p = argBuf(info, 0), g = argBuf(info, 3);
  DType sd = toDType(int(argInt(info, 6)));
  int64_t bufId = argInt(info, 7), bufOff = argInt(info, 8), mId = argInt(info, 9), mOff = argInt(info, 10);
  int64_t n = argInt(info, 11);
  SgdHyper h{argNum(info, 12), argNum(info, 13), argNum(info, 14), argNum(info, 15),
             argBool(info, 16), argBool(info, 17), argBool(info, 18), argGradScale(info, 19, "sgdStep")};
  MT_CHECK(isStateDType(sd), "sgdStep: the state dtype must be f32 or f64");
  MT_CHECK(n >= 0, "sgdStep: negative length ", n);
  if (n == 0) return info.Env().Undefined();
  MT_DISPATCH_PGS(p.dtype, g.dtype, sd, "sgdStep", {
    sgdKernel<P, G, S>(dataPtr<P>(p.id, p.off, n), ptrOrNull<S>(mId, mOff, n), dataPtr<G>(g.id, g.off, n),
                       ptrOrNull<S>(bufId, bufOff, n), n, h);
  });
  return info.Env().Undefined();
}

// adamStep(param: dtype,id,off, grad: dtype,id,off, stateDtype, mId, mOff, vId, vOff, masterId,
//          masterOff, n, lr, beta1, beta2, eps, weightDecay, step, decoupled, maximize[, gradScale])
// `step` counts from 1 (the bias corrections use it); decoupled: AdamW.
Napi::Value AdamStep(const Napi::CallbackInfo& info) {
  Buf p = argBuf(info, 0), g = argBuf(info, 3);
  DType sd = toDType(int(argInt(info, 6)));
  int64_t mId = argInt(info, 7), mOff = argInt(info, 8), vId = argInt(info, 9), vOff = argInt(info, 10);
  int64_t wId = argInt(info, 11), wOff = argInt(info, 12), n = argInt(info, 13);
  AdamHyper h{argNum(info, 14), argNum(info, 15), argNum(info, 16), argNum(info, 17), argNum(info, 18),
              argInt(info, 19), argBool(info, 20), argBool(info, 21), argGradScale(info, 22, "adamStep")};
  MT_CHECK(isStateDType(sd), "adamStep: the state dtype must be f32 or f64");
  MT_CHECK(n >= 0, "adamStep: negative length ", n);
  MT_CHECK(h.step >= 1, "adamStep: step counts from 1, got ", h.step);
  if (n == 0) return info.Env().Undefined();
  MT_DISPATCH_PGS(p.dtype, g.dtype, sd, "adamStep", {
    adamKernel<P, G, S>(dataPtr<P>(p.id, p.off, n), ptrOrNull<S>(wId, wOff, n), dataPtr<G>(g.id, g.off, n),
                        dataPtr<S>(mId, mOff, n), dataPtr<S>(vId, vOff, n), n, h);
  });
  return info.Env().Undefined();
}

// sum |x|^p (p = 2: squares, 1: absolute values), or max |x| for p = inf, accumulated in double
// per fixed chunk and combined in chunk order: the result does not depend on the thread count.
// NaN propagates (a NaN gradient gives a NaN norm).
template <typename T>
double normPowKernel(const T* x, int64_t n, double p) {
  int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(size_t(chunks), 0.0);
  const bool isMax = std::isinf(p);
  parallelFor(chunks, kChunk * 2, [&](int64_t c) {
    int64_t lo = c * kChunk, hi = lo + kChunk < n ? lo + kChunk : n;
    double acc = 0;
    if (isMax) {
      for (int64_t i = lo; i < hi; i++) {
        double a = std::abs(double(load(x + i)));
        if (a > acc || a != a) acc = a;
        if (acc != acc) break;
      }
    } else if (p == 2) {
      // 16 independent partial sums: enough vector accumulators to hide the add latency, and
      // a fixed order.
      constexpr int L = 16;
      double s[L] = {};
      int64_t i = lo;
      for (; i + L <= hi; i += L)
        for (int k = 0; k < L; k++) {
          double v = double(load(x + i + k));
          s[k] += v * v;
        }
      for (; i < hi; i++) {
        double v = double(load(x + i));
        s[0] += v * v;
      }
      for (int w = L / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++) s[k] += s[k + w];
      acc = s[0];
    } else if (p == 1) {
      for (int64_t i = lo; i < hi; i++) acc += std::abs(double(load(x + i)));
    } else {
      for (int64_t i = lo; i < hi; i++) acc += std::pow(std::abs(double(load(x + i))), p);
    }
    part[size_t(c)] = acc;
  });
  double total = 0;
  for (double v : part) {
    if (v != v) return v;
    total = isMax ? (v > total ? v : total) : total + v;
  }
  return total;
}

// normPow(dtype, id, off, n, p) -> number: see normPowKernel.
Napi::Value NormPow(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t id = argInt(info, 1), off = argInt(info, 2), n = argInt(info, 3);
  double p = argNum(info, 4);
  MT_CHECK(p > 0, "normPow: p must be positive, got ", p);
  double r = 0;
  if (n > 0) MT_DISPATCH_FLOAT(d, "normPow", r = normPowKernel<T>(dataPtr<T>(id, off, n), n, p));
  return Napi::Number::New(info.Env(), r);
}

// normPowInto(dtype, id, off, n, p, accId, accOff): acc[accOff] (f64) += normPow's value, or for
// p = inf acc = max(acc, value), NaN propagating (a NaN accumulator stays NaN). The CUDA version
// runs on the device; this one gives the TypeScript side the same single path on the CPU.
Napi::Value NormPowInto(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t id = argInt(info, 1), off = argInt(info, 2), n = argInt(info, 3);
  double p = argNum(info, 4);
  int64_t accId = argInt(info, 5), accOff = argInt(info, 6);
  MT_CHECK(p > 0, "normPowInto: p must be positive, got ", p);
  MT_CHECK(n >= 0, "normPowInto: negative length ", n);
  double* acc = dataPtr<double>(accId, accOff, 1);
  double r = 0;
  if (n > 0) MT_DISPATCH_FLOAT(d, "normPowInto", r = normPowKernel<T>(dataPtr<T>(id, off, n), n, p));
  if (!std::isinf(p)) *acc += r;
  else if (r > *acc || r != r) *acc = r;
  return info.Env().Undefined();
}

}  // namespace

void registerOptim(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "sgdStep", SgdStep);
  MT_EXPORT(exports, "adamStep", AdamStep);
  MT_EXPORT(exports, "normPow", NormPow);
  MT_EXPORT(exports, "normPowInto", NormPowInto);
  // The optimizer bindings (CPU and CUDA) take the trailing gradScale: TypeScript refuses to pass
  // one other than 1 to an older addon, which would ignore it.
  exports.Set("optimGradScale", Napi::Boolean::New(env, true));
}

}  // namespace mt
