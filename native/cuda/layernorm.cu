// Layer normalization over the last `cols` of each row, forward (saving mean and 1/std) and
// backward. Rows up to 1024 columns (f64 512) take the one-pass backward (layernorm_onepass.cu: dx
// and per-block partial dw, db from one read of x and g); wider ones dx per row here and dw, db as
// column sums over fixed row chunks, added in a fixed order (layerNormColumnSums).
// Rows up to 4096 wide take one warp each, longer ones one block each; rows of whole 16-byte
// vectors up to 2048 16-bit values wide are read once, 16 bytes a load, and kept in registers.
// Statistics and sums in double.
// Reference: native/cpu/layernorm.cc.
#include <algorithm>
#include <initializer_list>
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/layernorm_onepass.h"
#include "cuda/runtime.h"
#include "cuda/vec.cuh"
#include "cuda/warp_rows.cuh"

namespace mt {
namespace {

template <typename T>
using Stat = LayerNormStat<T>;

// Row r's mean and 1/std (two passes, as on the CPU: no cancellation for rows with a large mean),
// then y; the team (warp_rows.cuh) shares the column loops and the reductions.
template <typename T, typename Team>
__device__ __forceinline__ void forwardRow(const Team& t, const T* x, const T* w, const T* b, T* y, Stat<T>* mean,
                                           Stat<T>* rstd, int64_t r, int64_t cols, double eps) {
  using C = typename cu::Acc<T>::type;
  const T* xr = x + r * cols;
  T* yr = y + r * cols;
  double s = 0;
  for (int64_t j = t.first(); j < cols; j += Team::kStride) s += double(cu::ld(xr + j));
  const double mu = t.sum(s) / double(cols);
  double q = 0;
  for (int64_t j = t.first(); j < cols; j += Team::kStride) {
    double d = double(cu::ld(xr + j)) - mu;
    q += d * d;
  }
  const double rs = 1.0 / sqrt(t.sum(q) / double(cols) + eps);
  if (t.first() == 0) {
    mean[r] = Stat<T>(mu);
    rstd[r] = Stat<T>(rs);
  }
  const C cm = C(mu), cr = C(rs);
  for (int64_t j = t.first(); j < cols; j += Team::kStride) {
    C v = (cu::ld(xr + j) - cm) * cr;
    if (w) v *= cu::ld(w + j);
    if (b) v += cu::ld(b + j);
    cu::st(yr + j, v);
  }
}

// dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w (with addX: added to what dx holds,
// rounded once).
template <typename T, typename Team>
__device__ __forceinline__ void backwardRow(const Team& t, const T* x, const T* w, const Stat<T>* mean,
                                            const Stat<T>* rstd, const T* g, T* dx, bool addX, int64_t r, int64_t cols) {
  using C = typename cu::Acc<T>::type;
  const T* xr = x + r * cols;
  const T* gr = g + r * cols;
  const C mu = C(mean[r]), rs = C(rstd[r]);
  double sg = 0, sgx = 0;
  for (int64_t j = t.first(); j < cols; j += Team::kStride) {
    C xhat = (cu::ld(xr + j) - mu) * rs;
    C gw = cu::ld(gr + j) * (w ? cu::ld(w + j) : C(1));
    sg += double(gw);
    sgx += double(gw) * double(xhat);
  }
  const C mg = C(t.sum(sg) / double(cols));
  const C mgx = C(t.sum(sgx) / double(cols));
  for (int64_t j = t.first(); j < cols; j += Team::kStride) {
    C xhat = (cu::ld(xr + j) - mu) * rs;
    C gw = cu::ld(gr + j) * (w ? cu::ld(w + j) : C(1));
    C v = rs * (gw - mg - xhat * mgx);
    if (addX) v = cu::addRn(v, cu::ld(dx + r * cols + j));  // no product fused into the add
    cu::st(dx + r * cols + j, v);
  }
}

// One block per row.
template <typename T>
__global__ void forwardRows(const T* x, const T* w, const T* b, T* y, Stat<T>* mean, Stat<T>* rstd, int64_t cols,
                            double eps) {
  __shared__ double buf[cu::kThreads];
  forwardRow(cu::BlockTeam{buf}, x, w, b, y, mean, rstd, int64_t(blockIdx.x), cols, eps);
}

template <typename T>
__global__ void backwardRows(const T* x, const T* w, const Stat<T>* mean, const Stat<T>* rstd, const T* g, T* dx,
                             bool addX, int64_t cols) {
  __shared__ double buf[cu::kThreads];
  backwardRow(cu::BlockTeam{buf}, x, w, mean, rstd, g, dx, addX, int64_t(blockIdx.x), cols);
}

// Rows of up to cu::kWarpCols columns: one warp per row.
template <typename T>
__global__ void forwardWarpRows(const T* x, const T* w, const T* b, T* y, Stat<T>* mean, Stat<T>* rstd, int64_t rows,
                                int64_t cols, double eps) {
  const auto [r, lane, live] = cu::warpRow(rows);
  if (!live) return;
  forwardRow(cu::WarpTeam{lane}, x, w, b, y, mean, rstd, r, cols, eps);
}

template <typename T>
__global__ void backwardWarpRows(const T* x, const T* w, const Stat<T>* mean, const Stat<T>* rstd, const T* g, T* dx,
                                 bool addX, int64_t rows, int64_t cols) {
  const auto [r, lane, live] = cu::warpRow(rows);
  if (!live) return;
  backwardRow(cu::WarpTeam{lane}, x, w, mean, rstd, g, dx, addX, r, cols);
}

// Rows of whole 16-byte vectors, at most kCacheVecs per lane (16-bit floats: 2048 columns, f32
// 1024, f64 512), every pointer 16-byte aligned: each lane loads its share of the row once, 16
// bytes a load, and keeps it in registers for every pass (the scalar kernels above read the row
// two or three times, 2 bytes a load for 16-bit floats). Same formulas; a lane adds its columns
// in another order (vector by vector), which only moves the double sums' last bits.
// Rows of up to 4 vectors a lane take the N = 4 instances (GPT-2's 768 bf16 columns: 3): fewer
// registers live, so more warps per SM than N = 8 allows (ptxas: bf16 backward 164 registers at 8).
constexpr int kCacheVecs = 8;

template <typename T, int N>
struct RowCache {
  using V = cu::Vec<T>;
  V v[N];
  // Vector i of this lane is the row's vector i * 32 + lane; `n` vectors in the row.
  __device__ __forceinline__ void load(const T* row, int lane, int64_t n) {
#pragma unroll
    for (int i = 0; i < N; i++)
      if (int64_t(i) * 32 + lane < n) v[i] = reinterpret_cast<const V*>(row)[int64_t(i) * 32 + lane];
  }
};

// The vectors a lane caches for this row (4 or 8), or 0: the scalar kernels.
inline int rowCacheVecs(int dtype, int64_t cols, std::initializer_list<const void*> ptrs) {
  const int64_t kV = 16 / (dtype == cu::F64 ? 8 : dtype == cu::F32 ? 4 : 2);
  if (cols % kV != 0 || cols / kV > 32 * kCacheVecs) return 0;
  for (const void* p : ptrs)
    if (p && !cu::aligned16(p)) return 0;
  return cols / kV <= 32 * 4 ? 4 : 8;
}

template <typename T, int N>
__global__ void forwardWarpRowsVec(const T* x, const T* w, const T* b, T* y, Stat<T>* mean, Stat<T>* rstd, int64_t rows,
                                   int64_t cols, double eps) {
  using C = typename cu::Acc<T>::type;
  using V = cu::Vec<T>;
  constexpr int kV = cu::kVec<T>;
  const auto [r, lane, live] = cu::warpRow(rows);
  if (!live) return;
  const int64_t n = cols / kV;
  RowCache<T, N> xc;
  xc.load(x + r * cols, lane, n);
  double s = 0;
#pragma unroll
  for (int i = 0; i < N; i++) {
    if (int64_t(i) * 32 + lane >= n) continue;
#pragma unroll
    for (int e = 0; e < kV; e++) s += double(cu::ld(xc.v[i].v + e));
  }
  const double mu = cu::warpSum(s) / double(cols);
  double q = 0;
#pragma unroll
  for (int i = 0; i < N; i++) {
    if (int64_t(i) * 32 + lane >= n) continue;
#pragma unroll
    for (int e = 0; e < kV; e++) {
      double d = double(cu::ld(xc.v[i].v + e)) - mu;
      q += d * d;
    }
  }
  const double rs = 1.0 / sqrt(cu::warpSum(q) / double(cols) + eps);
  if (lane == 0) {
    mean[r] = Stat<T>(mu);
    rstd[r] = Stat<T>(rs);
  }
  const C cm = C(mu), cr = C(rs);
#pragma unroll
  for (int i = 0; i < N; i++) {
    const int64_t jv = int64_t(i) * 32 + lane;
    if (jv >= n) continue;
    V wv{}, bv{}, o;
    if (w) wv = reinterpret_cast<const V*>(w)[jv];
    if (b) bv = reinterpret_cast<const V*>(b)[jv];
#pragma unroll
    for (int e = 0; e < kV; e++) {
      C v = (cu::ld(xc.v[i].v + e) - cm) * cr;
      if (w) v *= cu::ld(wv.v + e);
      if (b) v += cu::ld(bv.v + e);
      cu::st(o.v + e, v);
    }
    reinterpret_cast<V*>(y + r * cols)[jv] = o;
  }
}

template <typename T, int N>
__global__ void backwardWarpRowsVec(const T* x, const T* w, const Stat<T>* mean, const Stat<T>* rstd, const T* g, T* dx,
                                    bool addX, int64_t rows, int64_t cols) {
  using C = typename cu::Acc<T>::type;
  using V = cu::Vec<T>;
  constexpr int kV = cu::kVec<T>;
  const auto [r, lane, live] = cu::warpRow(rows);
  if (!live) return;
  const int64_t n = cols / kV;
  RowCache<T, N> xc, gc;
  xc.load(x + r * cols, lane, n);
  gc.load(g + r * cols, lane, n);
  const C mu = C(mean[r]), rs = C(rstd[r]);
  double sg = 0, sgx = 0;
#pragma unroll
  for (int i = 0; i < N; i++) {
    const int64_t jv = int64_t(i) * 32 + lane;
    if (jv >= n) continue;
    V wv{};
    if (w) wv = reinterpret_cast<const V*>(w)[jv];
#pragma unroll
    for (int e = 0; e < kV; e++) {
      C xhat = (cu::ld(xc.v[i].v + e) - mu) * rs;
      C gw = cu::ld(gc.v[i].v + e) * (w ? cu::ld(wv.v + e) : C(1));
      sg += double(gw);
      sgx += double(gw) * double(xhat);
    }
  }
  const C mg = C(cu::warpSum(sg) / double(cols));
  const C mgx = C(cu::warpSum(sgx) / double(cols));
#pragma unroll
  for (int i = 0; i < N; i++) {
    const int64_t jv = int64_t(i) * 32 + lane;
    if (jv >= n) continue;
    V wv{}, o;
    if (w) wv = reinterpret_cast<const V*>(w)[jv];
    if (addX) o = reinterpret_cast<const V*>(dx + r * cols)[jv];
#pragma unroll
    for (int e = 0; e < kV; e++) {
      C xhat = (cu::ld(xc.v[i].v + e) - mu) * rs;
      C gw = cu::ld(gc.v[i].v + e) * (w ? cu::ld(wv.v + e) : C(1));
      C v = rs * (gw - mg - xhat * mgx);
      if (addX) v = cu::addRn(v, cu::ld(o.v + e));
      cu::st(o.v + e, v);
    }
    reinterpret_cast<V*>(dx + r * cols)[jv] = o;
  }
}

// Rows per partial sum of dw/db: a function of the shape only, so results are too; at most 65535
// chunks (the grid's y limit).
int64_t chunkRows(int64_t rows) { return std::max<int64_t>(64, (rows + 65534) / 65535); }

// Loads issued ahead of the sums in the kernel below: each thread's additions are one dependent
// chain (in row order, which fixes the results), so its loads are fetched kAhead at a time into
// registers first, then added in the same order: kAhead memory requests in flight per thread
// instead of the few a compiler's unrolling of the plain loop keeps.
constexpr int kAhead = 8;

// Partial column sums over rows [c*per, (c+1)*per): part[c][0][j] = sum g * xhat, part[c][1][j] = sum g.
template <typename T>
__global__ void backwardChunks(const T* x, const Stat<T>* mean, const Stat<T>* rstd, const T* g, int64_t rows,
                               int64_t cols, int64_t per, double* part) {
  const int64_t c = blockIdx.y, r0 = c * per, r1 = min(rows, r0 + per);
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < cols; j += int64_t(gridDim.x) * blockDim.x) {
    double sw = 0, sb = 0;
    for (int64_t ra = r0; ra < r1; ra += kAhead) {
      double gv[kAhead], xhat[kAhead];
#pragma unroll
      for (int u = 0; u < kAhead; u++) {
        const int64_t r = ra + u;
        if (r >= r1) break;
        gv[u] = double(cu::ld(g + r * cols + j));
        xhat[u] = (double(cu::ld(x + r * cols + j)) - double(mean[r])) * double(rstd[r]);
      }
#pragma unroll
      for (int u = 0; u < kAhead; u++) {
        if (ra + u >= r1) break;
        sw += gv[u] * xhat[u];
        sb += gv[u];
      }
    }
    part[(c * 2) * cols + j] = sw;
    part[(c * 2 + 1) * cols + j] = sb;
  }
}

}  // namespace

void cudaLayerNormForward(int dev, int dtype, const void* x, const void* w, const void* b, void* y, void* mean,
                          void* rstd, int64_t rows, int64_t cols, double eps) {
  cu::checkRows("layerNorm", rows);
  if (rows == 0 || cols == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "layerNorm", {
    const int cache = rowCacheVecs(dtype, cols, {x, w, b, y});
    if (cache) {
      auto forwardCached = cache == 4 ? forwardWarpRowsVec<T, 4> : forwardWarpRowsVec<T, 8>;
      MT_LAUNCH(forwardCached, cu::warpRowBlocks(rows), cu::kThreads, 0, s, static_cast<const T*>(x), static_cast<const T*>(w),
                static_cast<const T*>(b), static_cast<T*>(y), static_cast<Stat<T>*>(mean), static_cast<Stat<T>*>(rstd), rows,
                cols, eps);
    } else if (cols <= cu::kWarpCols)
      MT_LAUNCH(forwardWarpRows<T>, cu::warpRowBlocks(rows), cu::kThreads, 0, s, static_cast<const T*>(x),
                static_cast<const T*>(w), static_cast<const T*>(b), static_cast<T*>(y), static_cast<Stat<T>*>(mean),
                static_cast<Stat<T>*>(rstd), rows, cols, eps);
    else
      MT_LAUNCH(forwardRows<T>, unsigned(rows), cu::kThreads, 0, s, static_cast<const T*>(x), static_cast<const T*>(w),
                static_cast<const T*>(b), static_cast<T*>(y), static_cast<Stat<T>*>(mean), static_cast<Stat<T>*>(rstd),
                cols, eps);
  });
  cu::checkLaunch("layerNormForward");
}

int64_t cudaLayerNormScratchBytes(int dtype, int64_t rows, int64_t cols) {
  if (const int64_t parts = layerNormOnePassParts(dtype, rows, cols)) return parts * 2 * cols * layerNormOnePassPartBytes(dtype);
  const int64_t per = chunkRows(rows);
  return (rows + per - 1) / per * 2 * cols * int64_t(sizeof(double));
}

void cudaLayerNormBackward(int dev, int dtype, const void* x, const void* w, const void* mean, const void* rstd,
                           const void* g, void* dx, void* dw, void* db, int64_t rows, int64_t cols, void* scratch,
                           bool addW, bool addB, bool addX) {
  cu::checkRows("layerNorm", rows);
  if (cols == 0 || (!dx && !dw && !db)) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  if (rows == 0) {
    // Sums over no rows are 0, as on the CPU (all-zero bits are 0.0 in every float dtype).
    const size_t bytes = size_t(cols) * (dtype == cu::F64 ? 8 : dtype == cu::F32 ? 4 : 2);
    if (dw && !addW) cudaCheck(cudaMemsetAsync(dw, 0, bytes, s), "layerNorm backward (dw)");
    if (db && !addB) cudaCheck(cudaMemsetAsync(db, 0, bytes, s), "layerNorm backward (db)");
    return;
  }
  const bool sums = dw || db;
  if (sums && !scratch) cu::fail("layerNorm backward: no scratch for the weight and bias gradients");
  if (const int64_t parts = layerNormOnePassParts(dtype, rows, cols)) {
    layerNormOnePass(dev, s, dtype, x, w, mean, rstd, g, dx, addX, rows, cols, sums ? scratch : nullptr);
    if (sums) layerNormColumnSums(s, dtype, scratch, dtype == cu::F64, parts, cols, dw, db, addW, addB);
    cu::checkLaunch("layerNormBackward");
    return;
  }
  MT_CU_FLOAT(dtype, "layerNorm backward", {
    const auto* m = static_cast<const Stat<T>*>(mean);
    const auto* r = static_cast<const Stat<T>*>(rstd);
    // Rows this wide cache 8 vectors a lane or none (4 a lane fit the one-pass kernels).
    const int cache = dx ? rowCacheVecs(dtype, cols, {x, w, g, dx}) : 0;
    if (cache) {
      auto backwardCached = backwardWarpRowsVec<T, 8>;
      MT_LAUNCH(backwardCached, cu::warpRowBlocks(rows), cu::kThreads, 0, s, static_cast<const T*>(x), static_cast<const T*>(w), m,
                r, static_cast<const T*>(g), static_cast<T*>(dx), addX, rows, cols);
    } else if (dx && cols <= cu::kWarpCols)
      MT_LAUNCH(backwardWarpRows<T>, cu::warpRowBlocks(rows), cu::kThreads, 0, s, static_cast<const T*>(x),
                static_cast<const T*>(w), m, r, static_cast<const T*>(g), static_cast<T*>(dx), addX, rows, cols);
    else if (dx)
      MT_LAUNCH(backwardRows<T>, unsigned(rows), cu::kThreads, 0, s, static_cast<const T*>(x), static_cast<const T*>(w), m, r,
                static_cast<const T*>(g), static_cast<T*>(dx), addX, cols);
    if (sums) {
      const int64_t per = chunkRows(rows), chunks = (rows + per - 1) / per;
      dim3 grid(unsigned((cols + cu::kThreads - 1) / cu::kThreads), unsigned(chunks));
      MT_LAUNCH(backwardChunks<T>, grid, cu::kThreads, 0, s, static_cast<const T*>(x), m, r, static_cast<const T*>(g), rows, cols, per,
                static_cast<double*>(scratch));
      layerNormColumnSums(s, dtype, scratch, true, chunks, cols, dw, db, addW, addB);
    }
  });
  cu::checkLaunch("layerNormBackward");
}

}  // namespace mt
