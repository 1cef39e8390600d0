// Cross-entropy of [rows, C] logits against integer class targets: log-softmax and negative
// log-likelihood fused, forward (per-row losses and log-sum-exp) and backward
// (softmax - one_hot, times the incoming gradient). Rows whose target is the ignore value
// contribute 0 and get a zero gradient.
#include <cmath>
#include <type_traits>
#include "cpu/indices.h"
#include "cpu/rowmath.h"
#include "tensor/storage.h"
#include "util/args.h"
#include "util/parallel.h"

namespace mt {
namespace {

template <typename T>
using Stat = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T, typename I>
void crossEntropyForwardKernel(const T* x, const I* t, int64_t rows, int64_t C, int64_t ignore,
                               T* loss, Stat<T>* lse) {
  using Cp = typename Compute<T>::type;
  parallelFor(rows, C * 2, [&](int64_t r) {
    const int64_t target = int64_t(t[r]);
    if (target == ignore) {
      store(loss + r, Cp(0));
      lse[r] = Stat<T>(0);
      return;
    }
    const Cp* xr = computeRow(x + r * C, C, 0);
    const Cp m = laneMax(xr, C);
    const double l = double(m) + std::log(laneSumExp(xr, C, m));
    lse[r] = Stat<T>(l);
    store(loss + r, l - double(xr[target]));
  });
}

template <typename T, typename I>
void crossEntropyBackwardKernel(const T* x, const I* t, int64_t rows, int64_t C, int64_t ignore,
                                const Stat<T>* lse, const T* g, int64_t gStride, double scale,
                                T* dx) {
  using Cp = typename Compute<T>::type;
  parallelFor(rows, C * 2, [&](int64_t r) {
    const int64_t target = int64_t(t[r]);
    T* dr = dx + r * C;
    if (target == ignore) {
      for (int64_t j = 0; j < C; j++) store(dr + j, Cp(0));
      return;
    }
    const Cp* xr = computeRow(x + r * C, C, 0);
    const Cp gr = Cp(double(load(g + r * gStride)) * scale);
    const Cp l = Cp(lse[r]);
    for (int64_t j = 0; j < C; j++) store(dr + j, gr * expOf(Cp(xr[j] - l)));
    store(dr + target, load(dr + target) - gr);
  });
}

// crossEntropyForward(dtype, xId, xOff, rows, C, idxDtype, tId, tOff, ignore, lossId, lseId)
// Returns the number of rows not ignored, or -(1 + position) of the first target outside
// [0, C) that is not the ignore value (then nothing is written).
Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), rows = argInt(info, 3),
          C = argInt(info, 4);
  DType id = toDType(int(argInt(info, 5)));
  int64_t tId = argInt(info, 6), tOff = argInt(info, 7), ignore = argInt(info, 8),
          lossId = argInt(info, 9), lseId = argInt(info, 10);
  double result = 0;
  MT_DISPATCH_INDEX(id, "crossEntropy", {
    const I* t = dataPtr<I>(tId, tOff, rows);
    int64_t bad = firstOutOfRange(t, rows, C, ignore);
    if (bad >= 0) {
      result = -double(bad + 1);
    } else {
      int64_t count = 0;
      for (int64_t r = 0; r < rows; r++) count += int64_t(t[r]) != ignore;
      result = double(count);
      if (rows > 0) {
        MT_DISPATCH_FLOAT(d, "crossEntropy", {
          crossEntropyForwardKernel<T, I>(dataPtr<T>(xId, xOff, rows * C), t, rows, C, ignore,
                                          dataPtr<T>(lossId, 0, rows),
                                          dataPtr<Stat<T>>(lseId, 0, rows));
        });
      }
    }
  });
  return Napi::Number::New(info.Env(), result);
}

// crossEntropyBackward(dtype, xId, xOff, rows, C, idxDtype, tId, tOff, ignore, lseId,
//                      gId, gOff, gStride, scale, dxId): dx is fresh [rows, C]; g is read at
// gOff + r * gStride (stride 0: one scalar gradient for every row).
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), rows = argInt(info, 3),
          C = argInt(info, 4);
  DType id = toDType(int(argInt(info, 5)));
  int64_t tId = argInt(info, 6), tOff = argInt(info, 7), ignore = argInt(info, 8),
          lseId = argInt(info, 9), gId = argInt(info, 10), gOff = argInt(info, 11),
          gStride = argInt(info, 12);
  double scale = argNum(info, 13);
  int64_t dxId = argInt(info, 14);
  MT_CHECK(gStride == 0 || gStride == 1, "crossEntropy backward: gradient stride must be 0 or 1");
  if (rows * C == 0) return info.Env().Undefined();
  MT_DISPATCH_INDEX(id, "crossEntropy backward", {
    const I* t = dataPtr<I>(tId, tOff, rows);
    MT_CHECK(firstOutOfRange(t, rows, C, ignore) < 0, "crossEntropy backward: target out of range");
    MT_DISPATCH_FLOAT(d, "crossEntropy backward", {
      crossEntropyBackwardKernel<T, I>(dataPtr<T>(xId, xOff, rows * C), t, rows, C, ignore,
                                       dataPtr<Stat<T>>(lseId, 0, rows),
                                       dataPtr<T>(gId, gOff, gStride ? rows : 1), gStride, scale,
                                       dataPtr<T>(dxId, 0, rows * C));
    });
  });
  return info.Env().Undefined();
}

}  // namespace

void registerLoss(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "crossEntropyForward", CrossEntropyForward);
  MT_EXPORT(exports, "crossEntropyBackward", CrossEntropyBackward);
}

}  // namespace mt
