// Softmax and log-softmax over the last dim of a contiguous [rows, cols] tensor, forward and
// backward, fused with an input scale and an optional causal mask so attention never builds a
// mask tensor. 16-bit floats compute in float; row sums accumulate in double; float exp is
// rowmath.h's vectorizable one.
#include <algorithm>
#include <cmath>
#include <limits>
#include "cpu/rowmath.h"
#include "tensor/storage.h"
#include "util/args.h"
#include "util/parallel.h"

namespace mt {
namespace {

// With a causal mask the rows are [..., Tq, cols] query rows: query i sees columns j <= i
// (PyTorch's is_causal, aligned top-left). causalRows = Tq, or 0 for no mask.
inline int64_t visibleCols(int64_t r, int64_t cols, int64_t causalRows) {
  return causalRows > 0 ? std::min(cols, r % causalRows + 1) : cols;
}

template <typename T>
void softmaxForwardKernel(const T* x, T* y, int64_t rows, int64_t cols, bool logOut,
                          int64_t causalRows, double scale) {
  using C = typename Compute<T>::type;
  const C s = C(scale);
  const C negInf = -std::numeric_limits<C>::infinity();
  parallelFor(rows, cols * 4, [&](int64_t r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    const int64_t n = visibleCols(r, cols, causalRows);
    C* b = scratch<C>(n, 0);
    for (int64_t j = 0; j < n; j++) b[j] = s * load(xr + j);
    const C m = laneMax(b, n);
    if (logOut) {
      const C lse = C(double(m) + std::log(laneSumExp(b, n, m)));
      for (int64_t j = 0; j < n; j++) store(yr + j, b[j] - lse);
      for (int64_t j = n; j < cols; j++) store(yr + j, negInf);
    } else {
      const C inv = C(1.0 / laneExpInPlace(b, n, m));
      for (int64_t j = 0; j < n; j++) store(yr + j, b[j] * inv);
      for (int64_t j = n; j < cols; j++) store(yr + j, C(0));
    }
  });
}

// softmax:     dx = scale * y * (g - sum(g * y))
// log-softmax: dx = scale * (g - exp(y) * sum(g)); masked columns get 0.
template <typename T>
void softmaxBackwardKernel(const T* y, const T* g, T* dx, int64_t rows, int64_t cols, bool logOut,
                           int64_t causalRows, double scale) {
  using C = typename Compute<T>::type;
  const C s = C(scale);
  parallelFor(rows, cols * 4, [&](int64_t r) {
    T* dr = dx + r * cols;
    const int64_t n = visibleCols(r, cols, causalRows);
    const C* yr = computeRow(y + r * cols, n, 0);
    const C* gr = computeRow(g + r * cols, n, 1);
    if (logOut) {
      const C total = C(laneSum(gr, n));
      for (int64_t j = 0; j < n; j++) store(dr + j, s * (gr[j] - expOf(yr[j]) * total));
    } else {
      const C dot = C(laneDot(gr, yr, n));
      for (int64_t j = 0; j < n; j++) store(dr + j, s * yr[j] * (gr[j] - dot));
    }
    for (int64_t j = n; j < cols; j++) store(dr + j, C(0));
  });
}

// softmaxForward(dtype, xId, xOff, yId, yOff, rows, cols, log, causalRows, scale)
Napi::Value SoftmaxForward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), yId = argInt(info, 3),
          yOff = argInt(info, 4), rows = argInt(info, 5), cols = argInt(info, 6);
  bool logOut = argBool(info, 7);
  int64_t causalRows = argInt(info, 8);
  double scale = argNum(info, 9);
  MT_CHECK(rows >= 0 && cols >= 0 && causalRows >= 0, "softmax: bad sizes");
  int64_t n = rows * cols;
  if (n == 0) return info.Env().Undefined();
  MT_DISPATCH_FLOAT(d, "softmax", {
    softmaxForwardKernel<T>(dataPtr<T>(xId, xOff, n), dataPtr<T>(yId, yOff, n), rows, cols,
                            logOut, causalRows, scale);
  });
  return info.Env().Undefined();
}

// softmaxBackward(dtype, yId, yOff, gId, gOff, dxId, dxOff, rows, cols, log, causalRows, scale)
Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t yId = argInt(info, 1), yOff = argInt(info, 2), gId = argInt(info, 3),
          gOff = argInt(info, 4), dxId = argInt(info, 5), dxOff = argInt(info, 6),
          rows = argInt(info, 7), cols = argInt(info, 8);
  bool logOut = argBool(info, 9);
  int64_t causalRows = argInt(info, 10);
  double scale = argNum(info, 11);
  MT_CHECK(rows >= 0 && cols >= 0 && causalRows >= 0, "softmax backward: bad sizes");
  int64_t n = rows * cols;
  if (n == 0) return info.Env().Undefined();
  MT_DISPATCH_FLOAT(d, "softmax backward", {
    softmaxBackwardKernel<T>(dataPtr<T>(yId, yOff, n), dataPtr<T>(gId, gOff, n),
                             dataPtr<T>(dxId, dxOff, n), rows, cols, logOut, causalRows, scale);
  });
  return info.Env().Undefined();
}

}  // namespace

void registerSoftmax(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "softmaxForward", SoftmaxForward);
  MT_EXPORT(exports, "softmaxBackward", SoftmaxBackward);
}

}  // namespace mt
