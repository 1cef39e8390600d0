// Layer normalization over the last `cols` elements of each row, forward (saving mean and
// 1/std per row) and backward (dx, dweight, dbias). Biased variance, as PyTorch. Row statistics
// and the weight/bias gradient sums accumulate in double.
#include <omp.h>
#include <cmath>
#include <type_traits>
#include <vector>
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

// Statistics are f64 for f64 tensors and f32 otherwise.
template <typename T>
using Stat = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
void layerNormForwardKernel(const T* x, const T* w, const T* b, T* y, Stat<T>* mean, Stat<T>* rstd,
                            int64_t rows, int64_t cols, double eps) {
  using C = typename Compute<T>::type;
#pragma omp parallel for schedule(static) if (rows * cols > 16384 && rows > 1)
  for (int64_t r = 0; r < rows; r++) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    double sum = 0;
    for (int64_t j = 0; j < cols; j++) sum += double(load(xr + j));
    const double mu = sum / double(cols);
    double sq = 0;  // two passes: no cancellation for rows with a large mean
    for (int64_t j = 0; j < cols; j++) {
      double dv = double(load(xr + j)) - mu;
      sq += dv * dv;
    }
    const double rs = 1.0 / std::sqrt(sq / double(cols) + eps);
    mean[r] = Stat<T>(mu);
    rstd[r] = Stat<T>(rs);
    const C cm = C(mu), cr = C(rs);
    for (int64_t j = 0; j < cols; j++) {
      C v = (load(xr + j) - cm) * cr;
      if (w) v *= load(w + j);
      if (b) v += load(b + j);
      store(yr + j, v);
    }
  }
}

// dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)) with gw = g * w;
// dw = sum over rows of g * xhat; db = sum over rows of g.
template <typename T>
void layerNormBackwardKernel(const T* x, const T* w, const Stat<T>* mean, const Stat<T>* rstd,
                             const T* g, T* dx, T* dw, T* db, int64_t rows, int64_t cols) {
  using C = typename Compute<T>::type;
  const bool parallel = rows * cols > 16384 && rows > 1;
  const int threads = parallel ? omp_get_max_threads() : 1;
  // One partial sum per thread, added in thread order, so results do not depend on timing.
  std::vector<double> pw(dw ? size_t(threads) * cols : 0), pb(db ? size_t(threads) * cols : 0);
#pragma omp parallel num_threads(threads) if (parallel)
  {
    const int tid = omp_get_thread_num();
    double* myW = dw ? pw.data() + size_t(tid) * cols : nullptr;
    double* myB = db ? pb.data() + size_t(tid) * cols : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const T* xr = x + r * cols;
      const T* gr = g + r * cols;
      const C mu = C(mean[r]), rs = C(rstd[r]);
      double sg = 0, sgx = 0;
      for (int64_t j = 0; j < cols; j++) {
        const C xhat = (load(xr + j) - mu) * rs;
        const C gj = load(gr + j);
        const C gw = w ? gj * load(w + j) : gj;
        sg += double(gw);
        sgx += double(gw) * double(xhat);
        if (myW) myW[j] += double(gj) * double(xhat);
        if (myB) myB[j] += double(gj);
      }
      if (dx) {
        const C mg = C(sg / double(cols)), mgx = C(sgx / double(cols));
        T* dr = dx + r * cols;
        for (int64_t j = 0; j < cols; j++) {
          const C xhat = (load(xr + j) - mu) * rs;
          const C gj = load(gr + j);
          const C gw = w ? gj * load(w + j) : gj;
          store(dr + j, rs * (gw - mg - xhat * mgx));
        }
      }
    }
  }
  for (int64_t j = 0; j < cols; j++) {
    double sw = 0, sb = 0;
    for (int t = 0; t < threads; t++) {
      if (dw) sw += pw[size_t(t) * cols + j];
      if (db) sb += pb[size_t(t) * cols + j];
    }
    if (dw) store(dw + j, sw);
    if (db) store(db + j, sb);
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

// layerNormBackward(dtype, xId, xOff, wId, wOff, meanId, rstdId, gId, gOff, dxId, dwId, dbId, rows, cols)
// dx, dw and db are fresh contiguous tensors (id 0: not wanted).
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), wId = argInt(info, 3),
          wOff = argInt(info, 4), meanId = argInt(info, 5), rstdId = argInt(info, 6),
          gId = argInt(info, 7), gOff = argInt(info, 8), dxId = argInt(info, 9),
          dwId = argInt(info, 10), dbId = argInt(info, 11), rows = argInt(info, 12),
          cols = argInt(info, 13);
  MT_CHECK(rows >= 0 && cols > 0, "layerNorm backward: bad sizes");
  int64_t n = rows * cols;
  MT_DISPATCH_FLOAT(d, "layerNorm backward", {
    layerNormBackwardKernel<T>(
        dataPtr<T>(xId, xOff, n), optionalPtr<T>(wId, wOff, cols),
        dataPtr<Stat<T>>(meanId, 0, rows), dataPtr<Stat<T>>(rstdId, 0, rows),
        dataPtr<T>(gId, gOff, n), optionalPtr<T>(dxId, 0, n), optionalPtr<T>(dwId, 0, cols),
        optionalPtr<T>(dbId, 0, cols), rows, cols);
  });
  return info.Env().Undefined();
}

}  // namespace

void registerLayerNorm(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "layerNormForward", LayerNormForward);
  MT_EXPORT(exports, "layerNormBackward", LayerNormBackward);
}

}  // namespace mt
