// Layer norm backward in one read of x and g, for rows up to 32 * kMaxLaneCols<T> columns (1024;
// f64 512). Each block takes kRowsPerPart consecutive rows, each of its warps every kWarps-th of
// them: per row the warp computes dx (the row's two sums by shuffles, as layernorm.cu's row kernels)
// and adds g * xhat and g into its own column sums for dw and db (f32; f64 for f64 tensors), kept in
// shared memory. The block's warps' sums are then added in warp order into one partial per block,
// and columnSums adds the partials over blocks in a fixed order, in double: no float atomics, so
// the same bits every run (layernorm.cu's wide rows re-read x and g for dw, db).
// Two column layouts: 16-byte vectors (every pointer aligned, rows of whole vectors) and the scalar
// twin (an element a load, any width or alignment). Each column's sums take the rows in the same
// order in both, so dw and db are the same bits either way.
// Reference: native/cpu/layernorm.cc.
#include "cuda/layernorm_onepass.h"
#include "cuda/common.cuh"
#include "cuda/func_smem.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "cuda/vec.cuh"
#include "cuda/warp_rows.cuh"

namespace mt {
namespace {

constexpr int kWarps = cu::kThreads / 32;
// Rows per warp: enough that a block's partial (2 * cols sums) stays small beside the rows it read
// (a sixth of their bytes at bf16), few enough that GPT-2's 8192 rows make 256 blocks, about two
// per SM on 132 SMs. The summation order follows, so it is part of the results.
constexpr int kRowsPerWarp = 4;
constexpr int kRowsPerPart = kWarps * kRowsPerWarp;

// Elements a lane holds per row and per column sum: x, g and the two sums fit the registers
// without spills (bench/kernel_resources.ts).
template <typename T>
constexpr int kMaxLaneCols = sizeof(T) == 8 ? 16 : 32;

// A lane's E elements of a row, in packs of kV loaded at once: in the vector layout a pack is a
// 16-byte vector and element k is column ((k / kV) * 32 + lane) * kV + k % kV; in the scalar
// layout kV = 1: column k * 32 + lane. Columns past the row's end hold 0.
template <typename T, bool kVec, int E>
struct LaneRow {
  using C = typename cu::Acc<T>::type;
  static constexpr int kV = kVec ? cu::kVec<T> : 1;
  static_assert(E % kV == 0, "whole packs");
  struct alignas(kV * sizeof(T)) Pack {
    T v[kV];
  };
  Pack p[E / kV];

  static __device__ __forceinline__ int64_t col(int lane, int k) { return (int64_t(k / kV) * 32 + lane) * kV + k % kV; }
  __device__ __forceinline__ C at(int k) const { return cu::ld(p[k / kV].v + k % kV); }

  __device__ __forceinline__ void load(const T* row, int lane, int64_t cols) {
#pragma unroll
    for (int i = 0; i < E / kV; i++) {
      const int64_t c = (int64_t(i) * 32 + lane) * kV;
      if (c < cols) {
        p[i] = reinterpret_cast<const Pack*>(row)[c / kV];
      } else {
#pragma unroll
        for (int e = 0; e < kV; e++) cu::st(p[i].v + e, 0.0f);
      }
    }
  }

  // Writes f(k) (rounded to T) to each of the lane's columns in the row; with `add`, what the row
  // holds there plus f(k), rounded once (a gradient summed into the one held). In place only: an
  // addend pointer of its own took GPT-2's bf16 instance to 276 bytes of spills (ptxas).
  template <typename F>
  static __device__ __forceinline__ void store(T* row, int lane, int64_t cols, bool add, F f) {
#pragma unroll
    for (int i = 0; i < E / kV; i++) {
      const int64_t c = (int64_t(i) * 32 + lane) * kV;
      if (c >= cols) continue;
      Pack q;
      if (add) q = reinterpret_cast<const Pack*>(row)[c / kV];
#pragma unroll
      for (int e = 0; e < kV; e++) {
        C v = f(i * kV + e);
        if (add) v = cu::addRn(v, cu::ld(q.v + e));  // no product fused into the add
        cu::st(q.v + e, v);
      }
      reinterpret_cast<Pack*>(row)[c / kV] = q;
    }
  }

  // Hides the values from the compiler's common-subexpression elimination: what is computed from
  // them before this is computed again after, from the packed values, instead of kept unpacked in
  // registers (2 registers per pair of 16-bit values) across the row's reductions.
  __device__ __forceinline__ void opaque() {
#ifdef __CUDA_ARCH__
#pragma unroll
    for (int i = 0; i < E / kV; i++) {
      static_assert(sizeof(Pack) % 4 == 0 || sizeof(Pack) == 2, "32-bit words");
      if constexpr (sizeof(Pack) == 2) {
        asm volatile("" : "+h"(*reinterpret_cast<unsigned short*>(&p[i])));
      } else {
#pragma unroll
        for (int u = 0; u < int(sizeof(Pack)) / 4; u++) asm volatile("" : "+r"(reinterpret_cast<unsigned*>(&p[i])[u]));
      }
    }
#endif
  }
};

// Two blocks an SM (at most 128 registers a thread) where that spills nothing (ptxas, sm_90).
template <typename T, int E>
constexpr int kOnePassMinBlocks = E * sizeof(typename cu::Acc<T>::type) <= 96 ? 2 : 1;

// dx for the block's rows (when dx is not null) and, when part is not null, its partial:
// part[blockIdx.x][0][j] = sum g * xhat, part[blockIdx.x][1][j] = sum g. Each warp's column sums
// live in shared memory, lane-major (a lane's element k at k * 32 + lane: no bank conflicts, and
// no lane touches another's), not in registers: held there too (2 E more a lane) they took GPT-2's
// bf16 instance to 186 registers, one block an SM, and the warps an SM holds are what hide the
// loads' latency.

template <typename T, bool kVec, int E>
__global__ void __launch_bounds__(cu::kThreads, (kOnePassMinBlocks<T, E>))
    backwardOnePass(const T* x, const T* w, const LayerNormStat<T>* mean, const LayerNormStat<T>* rstd, const T* g, T* dx,
                    bool addX, int64_t rows, int64_t cols, typename cu::Acc<T>::type* part) {
  using C = typename cu::Acc<T>::type;
  using Row = LaneRow<T, kVec, E>;
  MT_DYNAMIC_SHARED(double, smem);  // one type in every instance: their declarations are one array
  C* acc = reinterpret_cast<C*>(smem);  // [kWarps][2][32 * E]
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  C* sw = acc + warp * 2 * 32 * E + lane;
  C* sb = sw + 32 * E;
  if (part) {
#pragma unroll
    for (int k = 0; k < E; k++) sw[k * 32] = sb[k * 32] = C(0);
  }
  // The next row's x and g: loaded a row ahead where a row's share takes at most 24 registers a
  // lane in the vector layout (16-bit rows up to 768 wide, GPT-2's), so they are in flight while
  // this row's sums and shuffles run; wider shares and the scalar twin spill with two rows (ptxas).
  constexpr bool kAheadRow = kVec && E * sizeof(T) <= 48;
  Row xn, gn;
  const auto loadRow = [&](int64_t r) {
    xn.load(x + r * cols, lane, cols);
    gn.load(g + r * cols, lane, cols);
  };
  const int64_t first = int64_t(blockIdx.x) * kRowsPerPart + warp;
  if (kAheadRow && first < rows) loadRow(first);
  for (int i = 0; i < kRowsPerWarp; i++) {
    const int64_t r = first + int64_t(i) * kWarps;
    if (r >= rows) break;
    if (!kAheadRow) loadRow(r);
    Row xr = xn, gr = gn;
    if (kAheadRow && i + 1 < kRowsPerWarp && r + kWarps < rows) loadRow(r + kWarps);
    // w from L1 each row: held across rows it would take the registers the next row needs.
    Row wr;
    if (dx && w) wr.load(w, lane, cols);
    const C mu = C(mean[r]), rs = C(rstd[r]);
    // dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w; dw += g * xhat, db += g.
    double sg = 0, sgx = 0;
#pragma unroll
    for (int k = 0; k < E; k++) {
      const C xhat = (xr.at(k) - mu) * rs, gk = gr.at(k);
      if (part) {
        sw[k * 32] += gk * xhat;
        sb[k * 32] += gk;
      }
      if (dx && Row::col(lane, k) < cols) {
        const C gw = w ? cu::mulRn(gk, wr.at(k)) : gk;
        sg += double(gw);
        sgx += double(gw) * double(xhat);
      }
    }
    if (!dx) continue;
    const C mg = C(cu::warpSum(sg) / double(cols));
    const C mgx = C(cu::warpSum(sgx) / double(cols));
    xr.opaque();
    gr.opaque();
    if (w) wr.opaque();
    Row::store(dx + r * cols, lane, cols, addX, [&](int k) {
      const C xhat = (xr.at(k) - mu) * rs;
      // gw rounded as in the sums above: fused into the subtraction (the H200's contraction), one
      // column's dx came out as rstd times g * w's rounding error instead of 0.
      const C gw = w ? cu::mulRn(gr.at(k), wr.at(k)) : gr.at(k);
      return rs * (gw - mg - xhat * mgx);
    });
  }
  if (!part) return;
  // The block's partial: the warps' sums added in warp order.
  __syncthreads();
  C* out = part + int64_t(blockIdx.x) * 2 * cols;
  constexpr int kV = Row::kV;
  for (int64_t j = threadIdx.x; j < cols; j += cu::kThreads) {
    // Column j is element k of lane l (Row::col inverted).
    const int64_t jv = j / kV;
    const int l = int(jv % 32), k = int(jv / 32) * kV + int(j % kV);
#pragma unroll
    for (int which = 0; which < 2; which++) {
      const C* a = acc + which * 32 * E + k * 32 + l;
      C s = a[0];
#pragma unroll
      for (int h = 1; h < kWarps; h++) s += a[h * 2 * 32 * E];
      out[which * cols + j] = s;
    }
  }
}

// columnSums: each block takes 32 of the 2 * cols sums (dw's columns, then db's), a lane each; its
// kSumSlices warps each add every kSumSlices-th partial in order (kSumAhead loads in flight a
// thread), then warp 0 adds the slices in order. Few columns (768 at GPT-2's width), many partials:
// a thread per column alone would wait on one load after another.
constexpr int kSumSlices = 32;
constexpr int kSumAhead = 8;

template <typename T, typename A>
__global__ void __launch_bounds__(kSumSlices * 32)
    columnSums(const A* part, int64_t parts, int64_t cols, T* dw, T* db, bool addW, bool addB) {
  __shared__ double buf[kSumSlices][32];
  const int lane = int(threadIdx.x) % 32, slice = int(threadIdx.x) / 32;
  const int64_t width = 2 * cols, jj = int64_t(blockIdx.x) * 32 + lane;
  double s = 0;
  if (jj < width) {
    for (int64_t pa = slice; pa < parts; pa += int64_t(kSumSlices) * kSumAhead) {
      A v[kSumAhead];
#pragma unroll
      for (int u = 0; u < kSumAhead; u++) {
        const int64_t p = pa + int64_t(u) * kSumSlices;
        if (p >= parts) break;
        v[u] = part[p * width + jj];
      }
#pragma unroll
      for (int u = 0; u < kSumAhead; u++) {
        if (pa + int64_t(u) * kSumSlices >= parts) break;
        s += double(v[u]);
      }
    }
  }
  buf[slice][lane] = s;
  __syncthreads();
  if (slice != 0 || jj >= width) return;
  double t = 0;
  for (int k = 0; k < kSumSlices; k++) t += buf[k][lane];
  const bool isW = jj < cols;
  T* out = isW ? dw : db;
  const int64_t j = isW ? jj : jj - cols;
  if (out) cu::st(out + j, (isW ? addW : addB) ? t + double(cu::ld(out + j)) : t);
}

template <typename T, bool kVec, int E>
constexpr size_t onePassSmem() { return size_t(kWarps) * 2 * 32 * E * sizeof(typename cu::Acc<T>::type); }

template <typename T, bool kVec, int E>
void launchOnePass(int dev, cudaStream_t s, const T* x, const T* w, const LayerNormStat<T>* mean, const LayerNormStat<T>* rstd,
                   const T* g, T* dx, bool addX, int64_t rows, int64_t cols, void* part) {
  const unsigned blocks = unsigned((rows + kRowsPerPart - 1) / kRowsPerPart);
  auto* p = static_cast<typename cu::Acc<T>::type*>(part);
  // No column sums wanted: no shared memory (the kernel returns before it would touch it).
  const size_t smem = p ? onePassSmem<T, kVec, E>() : 0;
  if (smem > 48 * 1024) cudaAllowDynamicSmem(dev, reinterpret_cast<const void*>(backwardOnePass<T, kVec, E>), smem, "layerNorm backward");
  if constexpr (kVec) {
    auto backwardOnePassVec = backwardOnePass<T, true, E>;
    MT_LAUNCH(backwardOnePassVec, blocks, cu::kThreads, smem, s, x, w, mean, rstd, g, dx, addX, rows, cols, p);
  } else {
    auto backwardOnePassScalar = backwardOnePass<T, false, E>;
    MT_LAUNCH(backwardOnePassScalar, blocks, cu::kThreads, smem, s, x, w, mean, rstd, g, dx, addX, rows, cols, p);
  }
}

// The instance holding E elements a lane (8, 16, 24 or 32, at most kMaxLaneCols<T>).
template <typename T, bool kVec>
void launchOnePass(int E, int dev, cudaStream_t s, const T* x, const T* w, const LayerNormStat<T>* mean,
                   const LayerNormStat<T>* rstd, const T* g, T* dx, bool addX, int64_t rows, int64_t cols, void* part) {
  if (E == 8) return launchOnePass<T, kVec, 8>(dev, s, x, w, mean, rstd, g, dx, addX, rows, cols, part);
  if (E == 16) return launchOnePass<T, kVec, 16>(dev, s, x, w, mean, rstd, g, dx, addX, rows, cols, part);
  if constexpr (kMaxLaneCols<T> >= 32) {
    if (E == 24) return launchOnePass<T, kVec, 24>(dev, s, x, w, mean, rstd, g, dx, addX, rows, cols, part);
    if (E == 32) return launchOnePass<T, kVec, 32>(dev, s, x, w, mean, rstd, g, dx, addX, rows, cols, part);
  }
  cu::fail("layerNorm backward: no one-pass instance for " + std::to_string(E) + " columns a lane");
}

int elemBytes(int dtype) { return dtype == cu::F64 ? 8 : dtype == cu::F32 ? 4 : 2; }

}  // namespace

int64_t layerNormOnePassParts(int dtype, int64_t rows, int64_t cols) {
  const int64_t maxCols = 32 * (dtype == cu::F64 ? kMaxLaneCols<double> : kMaxLaneCols<float>);
  if (cols < 1 || cols > maxCols) return 0;
  return (rows + kRowsPerPart - 1) / kRowsPerPart;
}

int layerNormOnePassPartBytes(int dtype) { return dtype == cu::F64 ? 8 : 4; }

void layerNormOnePass(int dev, cudaStream_t s, int dtype, const void* x, const void* w, const void* mean, const void* rstd,
                      const void* g, void* dx, bool addX, int64_t rows, int64_t cols, void* part) {
  const int64_t kV = 16 / elemBytes(dtype);
  bool vec = cols % kV == 0;
  for (const void* p : {x, w, g, static_cast<const void*>(dx)})
    if (p && !cu::aligned16(p)) vec = false;
  // Elements a lane needs (whole vectors in the vector layout), rounded up to an instance's.
  const int64_t need = vec ? (cols / kV + 31) / 32 * kV : (cols + 31) / 32;
  const int E = int((need + 7) / 8 * 8);
  MT_CU_FLOAT(dtype, "layerNorm backward", {
    auto* xt = static_cast<const T*>(x);
    auto* wt = static_cast<const T*>(w);
    auto* m = static_cast<const LayerNormStat<T>*>(mean);
    auto* r = static_cast<const LayerNormStat<T>*>(rstd);
    auto* gt = static_cast<const T*>(g);
    auto* dxt = static_cast<T*>(dx);
    if (vec) launchOnePass<T, true>(E, dev, s, xt, wt, m, r, gt, dxt, addX, rows, cols, part);
    else launchOnePass<T, false>(E, dev, s, xt, wt, m, r, gt, dxt, addX, rows, cols, part);
  });
}

void layerNormColumnSums(cudaStream_t s, int dtype, const void* part, bool partF64, int64_t parts, int64_t cols,
                         void* dw, void* db, bool addW, bool addB) {
  const unsigned blocks = unsigned((2 * cols + 31) / 32);
  MT_CU_FLOAT(dtype, "layerNorm backward", {
    if (partF64) {
      auto columnSumsF64 = columnSums<T, double>;
      MT_LAUNCH(columnSumsF64, blocks, kSumSlices * 32, 0, s, static_cast<const double*>(part), parts, cols, static_cast<T*>(dw),
                static_cast<T*>(db), addW, addB);
    } else {
      auto columnSumsF32 = columnSums<T, float>;
      MT_LAUNCH(columnSumsF32, blocks, kSumSlices * 32, 0, s, static_cast<const float*>(part), parts, cols, static_cast<T*>(dw),
                static_cast<T*>(db), addW, addB);
    }
  });
}

}  // namespace mt
