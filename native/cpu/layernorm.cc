// Layer normalization over the last `cols` elements of each row, forward (saving mean and
// 1/std per row) and backward (dx, dweight, dbias). Biased variance, as PyTorch. Row statistics
// and the weight/bias gradient sums accumulate in double.
#include <omp.h>
#include <cmath>
#include <type_traits>
#include <vector>
#include "cpu/rowmath.h"
#include "tensor/storage.h"
#include "util/args.h"
#include "util/parallel.h"

namespace mt {
namespace {

// Statistics are f64 for f64 tensors and f32 otherwise.
template <typename T>
using Stat = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
void layerNormForwardKernel(const T* x, const T* w, const T* b, T* y, Stat<T>* mean, Stat<T>* rstd,
                            int64_t rows, int64_t cols, double eps) {
  using C = typename Compute<T>::type;
  parallelFor(rows, cols * 2, [&](int64_t r) {
    const C* xr = computeRow(x + r * cols, cols, 0);
    T* yr = y + r * cols;
    const double mu = laneSum(xr, cols) / double(cols);
    // Two passes: no cancellation for rows with a large mean.
    const double rs = 1.0 / std::sqrt(laneSqDev(xr, cols, mu) / double(cols) + eps);
    mean[r] = Stat<T>(mu);
    rstd[r] = Stat<T>(rs);
    const C cm = C(mu), cr = C(rs);
    if (w && b) {
      for (int64_t j = 0; j < cols; j++) store(yr + j, (xr[j] - cm) * cr * load(w + j) + load(b + j));
    } else {
      for (int64_t j = 0; j < cols; j++) {
        C v = (xr[j] - cm) * cr;
        if (w) v *= load(w + j);
        if (b) v += load(b + j);
        store(yr + j, v);
      }
    }
  });
}

// dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)) with gw = g * w;
// dw = sum over rows of g * xhat; db = sum over rows of g (added to what dw / db hold with addW /
// addB: a parameter's gradient written into its .grad, rounded once; dx likewise with addX: a
// gradient summed into the one held).
template <typename T>
void layerNormBackwardKernel(const T* x, const T* w, const Stat<T>* mean, const Stat<T>* rstd,
                             const T* g, T* dx, T* dw, T* db, int64_t rows, int64_t cols, bool addW,
                             bool addB, bool addX) {
  using C = typename Compute<T>::type;
  const bool parallel = rows > 1 && rows * cols * 3 >= 32768;
  const int threads = parallel ? omp_get_max_threads() : 1;
  // One partial sum per thread, added in thread order, so results do not depend on timing.
  std::vector<double> pw(dw ? size_t(threads) * cols : 0), pb(db ? size_t(threads) * cols : 0);
  // The weight in the compute type, shared by all threads.
  std::vector<C> wide(w ? size_t(cols) : 0);
  for (int64_t j = 0; w && j < cols; j++) wide[j] = load(w + j);
  const C* wrow = w ? wide.data() : nullptr;
#pragma omp parallel num_threads(threads) if (parallel)
  {
    const int tid = omp_get_thread_num();
    double* myW = dw ? pw.data() + size_t(tid) * cols : nullptr;
    double* myB = db ? pb.data() + size_t(tid) * cols : nullptr;
    C* gw = scratch<C>(cols, 0);
    C* xhat = scratch<C>(cols, 1);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const T* xr = x + r * cols;
      const T* gr = g + r * cols;
      const C mu = C(mean[r]), rs = C(rstd[r]);
      for (int64_t j = 0; j < cols; j++) {
        xhat[j] = (load(xr + j) - mu) * rs;
        gw[j] = load(gr + j);
      }
      if (myW) for (int64_t j = 0; j < cols; j++) myW[j] += double(gw[j]) * double(xhat[j]);
      if (myB) for (int64_t j = 0; j < cols; j++) myB[j] += double(gw[j]);
      if (!dx) continue;
      if (wrow) for (int64_t j = 0; j < cols; j++) gw[j] *= wrow[j];
      const C mg = C(laneSum(gw, cols) / double(cols));
      const C mgx = C(laneDot(gw, xhat, cols) / double(cols));
      T* dr = dx + r * cols;
      if (!addX) {
        for (int64_t j = 0; j < cols; j++) store(dr + j, rs * (gw[j] - mg - xhat[j] * mgx));
        continue;
      }
      // The term first, then the sum in its own loop: no product fused into the add (f32/f64 then
      // give the separate add's bits).
      for (int64_t j = 0; j < cols; j++) gw[j] = rs * (gw[j] - mg - xhat[j] * mgx);
      for (int64_t j = 0; j < cols; j++) store(dr + j, gw[j] + load(dr + j));
    }
  }
  for (int64_t j = 0; j < cols; j++) {
    double sw = 0, sb = 0;
    for (int t = 0; t < threads; t++) {
      if (dw) sw += pw[size_t(t) * cols + j];
      if (db) sb += pb[size_t(t) * cols + j];
    }
    if (dw) store(dw + j, addW ? sw + double(load(dw + j)) : sw);
    if (db) store(db + j, addB ? sb + double(load(db + j)) : sb);
  }
}

// An optional tensor argument: id 0 means absent.
template <typename T>
T* optionalPtr(int64_t id, int64_t off, int64_t n) {
  return id == 0 ? nullptr : dataPtr<T>(id, off, n);
}

// layerNormForward(dtype, xId, xOff, wId, wOff, bId, bOff, yId, yOff, meanId, rstdId, rows, cols, eps)
Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), wId = argInt(info, 3),
          wOff = argInt(info, 4), bId = argInt(info, 5), bOff = argInt(info, 6),
          yId = argInt(info, 7), yOff = argInt(info, 8), meanId = argInt(info, 9),
          rstdId = argInt(info, 10), rows = argInt(info, 11), cols = argInt(info, 12);
  double eps = argNum(info, 13);
  MT_CHECK(rows >= 0 && cols > 0 && eps > 0, "layerNorm: bad sizes or eps");
  int64_t n = rows * cols;
  if (n == 0) return info.Env().Undefined();
  MT_DISPATCH_FLOAT(d, "layerNorm", {
    layerNormForwardKernel<T>(dataPtr<T>(xId, xOff, n), optionalPtr<T>(wId, wOff, cols),
                              optionalPtr<T>(bId, bOff, cols), dataPtr<T>(yId, yOff, n),
                              dataPtr<Stat<T>>(meanId, 0, rows), dataPtr<Stat<T>>(rstdId, 0, rows),
                              rows, cols, eps);
  });
  return info.Env().Undefined();
}

// layerNormBackward(dtype, xId, xOff, wId, wOff, meanId, rstdId, gId, gOff, dxId, dwId, dbId, rows, cols
//                   [, dwOff, dbOff, addW, addB[, dxOff, addX]])
// dx, dw and db contiguous from their offsets (0 when absent); id 0: not wanted. addW / addB: add
// the sums to what dw / db hold instead of writing them; addX: dx likewise (rounded once).
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), wId = argInt(info, 3),
          wOff = argInt(info, 4), meanId = argInt(info, 5), rstdId = argInt(info, 6),
          gId = argInt(info, 7), gOff = argInt(info, 8), dxId = argInt(info, 9),
          dwId = argInt(info, 10), dbId = argInt(info, 11), rows = argInt(info, 12),
          cols = argInt(info, 13);
  const bool into = info.Length() > 14;
  const int64_t dwOff = into ? argInt(info, 14) : 0, dbOff = into ? argInt(info, 15) : 0;
  const bool addW = into && argBool(info, 16), addB = into && argBool(info, 17);
  const bool intoX = info.Length() > 18;
  const int64_t dxOff = intoX ? argInt(info, 18) : 0;
  const bool addX = intoX && argBool(info, 19);
  MT_CHECK(rows >= 0 && cols > 0, "layerNorm backward: bad sizes");
  MT_CHECK(dwOff >= 0 && dbOff >= 0 && dxOff >= 0, "layerNorm backward: negative offset (dw ", dwOff, ", db ", dbOff, ", dx ", dxOff, ")");
  MT_CHECK(!addX || dxId, "layerNorm backward: addX without dx");
  int64_t n = rows * cols;
  MT_DISPATCH_FLOAT(d, "layerNorm backward", {
    layerNormBackwardKernel<T>(
        dataPtr<T>(xId, xOff, n), optionalPtr<T>(wId, wOff, cols),
        dataPtr<Stat<T>>(meanId, 0, rows), dataPtr<Stat<T>>(rstdId, 0, rows),
        dataPtr<T>(gId, gOff, n), optionalPtr<T>(dxId, dxOff, n), optionalPtr<T>(dwId, dwOff, cols),
        optionalPtr<T>(dbId, dbOff, cols), rows, cols, addW, addB, addX);
  });
  return info.Env().Undefined();
}

}  // namespace

void registerLayerNorm(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "layerNormForward", LayerNormForward);
  MT_EXPORT(exports, "layerNormBackward", LayerNormBackward);
  exports.Set("layerNormGradInto", Napi::Boolean::New(env, true));  // takes dwOff, dbOff, addW, addB
  exports.Set("layerNormDxInto", Napi::Boolean::New(env, true));    // takes dxOff, addX (args 18, 19)
}

}  // namespace mt
