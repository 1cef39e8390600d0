// Fused scaled-dot-product attention (flash-attention style), forward and backward, for head dims
// 32, 64 and 128: o = softmax(scale * q kᵀ [+ causal mask]) v without materializing the T×T
// scores. The forward keeps a running max and sum per query row over key tiles in shared memory
// (online softmax) and stores each row's log-sum-exp; the backward recomputes the probabilities
// tile by tile from it. Deterministic: dK/dV are summed by one block per key tile looping over
// query tiles, dQ by one block per query tile looping over key tiles (no atomics).
// f64 computes in double, everything else in float. These SIMT kernels serve f32 and f64; bf16
// and f16 go to the mma.sync kernels (attention_fa2*.cu) where they apply, the WMMA tensor-core
// ones (attention_tc.cu) elsewhere, unless MESHTRAIN_ATTENTION says otherwise (attnFamily below).
// Reference: the composed ops of src/ops/attention.ts (matmul, scaled causal softmax, matmul).
//
// Layout: tensors are [batch, heads, T, D] with any element strides for batch, head and position
// and stride 1 along D. Tiles of 32 rows are stored transposed and padded (x[d * 33 + row]) so
// that reading a column across the warp (lane = row) and a row across the warp (lane = d) both
// hit 32 different banks.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include "cuda/common.cuh"
#include "cuda/attention.h"
#include "cuda/attention_cudnn.h"
#include "cuda/attention_fa2_bwd.h"
#include "cuda/attention_fa2.h"
#include "cuda/attention_tc.h"
#include "cuda/runtime.h"
#include "cuda/vec.cuh"

#ifndef MT_DYNAMIC_SHARED  // older common.cuh: the nvcc spelling
#define MT_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]
#endif

namespace mt {
namespace {

constexpr int kWarps = 4;              // warps per block
constexpr int kRows = 4;               // query rows (forward, dQ) or key rows (dK/dV) per warp
constexpr int kBr = kWarps * kRows;    // rows a block owns
constexpr int kBc = 32;                // rows of a streamed tile: one per lane
constexpr int kPad = kBc + 1;          // padded tile row length (bank-conflict free)
constexpr unsigned kFull = 0xffffffffu;

template <typename T>
using Acc = typename cu::Acc<T>::type;

// NaN-propagating max (a NaN score must reach the output, as on the CPU, so overflow is seen).
template <typename A>
__device__ __forceinline__ A maxNan(A a, A b) {
  return (b > a || b != b) ? b : a;
}

template <typename A>
__device__ __forceinline__ A warpMax(A v) {
  for (int o = 16; o > 0; o /= 2) v = maxNan(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

template <typename A>
__device__ __forceinline__ A warpSum(A v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(kFull, v, o);
  return v;
}

template <typename A>
__device__ __forceinline__ A negInf() {
  return -A(CUDART_INF);
}

// Rows [t0, t0 + kBc) of one head (`base` at position 0, `ts` elements between positions) into
// dst[d * kPad + row], rows at or past `rows` as 0. Global reads run along d (coalesced).
template <int D, typename T, typename A>
__device__ __forceinline__ void loadTransposed(A* dst, const T* base, int64_t ts, int64_t t0, int64_t rows) {
  for (int i = threadIdx.x; i < kBc * D; i += kWarps * 32) {
    const int r = i / D, d = i % D;
    const int64_t t = t0 + r;
    dst[d * kPad + r] = t < rows ? A(cu::ld(base + t * ts + d)) : A(0);
  }
}

// Rows [t0, t0 + kBr) into dst[row * D + d] (read by broadcast), rows past `rows` as 0.
template <int D, typename T, typename A>
__device__ __forceinline__ void loadRows(A* dst, const T* base, int64_t ts, int64_t t0, int64_t rows) {
  for (int i = threadIdx.x; i < kBr * D; i += kWarps * 32) {
    const int r = i / D, d = i % D;
    const int64_t t = t0 + r;
    dst[i] = t < rows ? A(cu::ld(base + t * ts + d)) : A(0);
  }
}

// Position 0 of head `bh` (= batch * heads + head).
template <typename P>
__device__ __forceinline__ P* headOf(P* p, const CudaAttnStrides& s, int64_t bh, int64_t heads) {
  return p + (bh / heads) * s.b + (bh % heads) * s.h;
}

// Query i sees key j when j < tk and, causal, j <= i (top-left aligned).
__device__ __forceinline__ bool visible(int64_t i, int64_t j, int64_t tk, bool causal) {
  return j < tk && (!causal || j <= i);
}

// acc[r][c] += sum over jj of rows[(warp * kRows + r) * kBc + jj] * colsT[(lane + 32 * c) * kPad + jj]:
// this warp's kRows rows of a [kBr][kBc] tile times a transposed [D][kPad] tile, lanes over d (the
// forward's P·V, dQ's dS·K).
template <int kPer, typename A>
__device__ __forceinline__ void accumulateTile(A (&acc)[kRows][kPer], const A* rows, const A* colsT, int warp, int lane) {
#pragma unroll 8
  for (int jj = 0; jj < kBc; jj++) {
#pragma unroll
    for (int c = 0; c < kPer; c++) {
      const A x = colsT[(lane + 32 * c) * kPad + jj];
#pragma unroll
      for (int r = 0; r < kRows; r++) acc[r][c] += rows[(warp * kRows + r) * kBc + jj] * x;
    }
  }
}

// The backward's two score tiles for this warp's kRows rows against the tile's 32 lanes:
// s[r] = sum over d of rows[(warp * kRows + r) * D + d] * colsT[d * kPad + lane], dp[r] likewise
// from rows2 and cols2T (dK/dV: keys · queries and values · dO; dQ: queries · keys and dO · values).
template <int D, typename A>
__device__ __forceinline__ void scoreTiles(A (&s)[kRows], A (&dp)[kRows], const A* rows, const A* colsT, const A* rows2,
                                           const A* cols2T, int warp, int lane) {
#pragma unroll
  for (int r = 0; r < kRows; r++) s[r] = dp[r] = 0;
#pragma unroll 16
  for (int d = 0; d < D; d++) {
    const A cv = colsT[d * kPad + lane], cv2 = cols2T[d * kPad + lane];
#pragma unroll
    for (int r = 0; r < kRows; r++) {
      s[r] += rows[(warp * kRows + r) * D + d] * cv;
      dp[r] += rows2[(warp * kRows + r) * D + d] * cv2;
    }
  }
}

// grid (batch * heads, query tiles of kBr); kWarps warps; each warp owns kRows query rows, and
// lane j scores key k0 + j of the current tile.
template <typename T, int D>
__global__ void __launch_bounds__(kWarps * 32)
    attnForward(const T* q, CudaAttnStrides qs, const T* k, CudaAttnStrides ks, const T* v, CudaAttnStrides vs, T* o,
                CudaAttnStrides os, Acc<T>* lse, CudaAttnShape g) {
  using A = Acc<T>;
  constexpr int kPer = D / 32;
  MT_DYNAMIC_SHARED(unsigned char, smem);
  A* kT = reinterpret_cast<A*>(smem);  // [D][kPad]
  A* vT = kT + D * kPad;               // [D][kPad]
  A* qS = vT + D * kPad;               // [kBr][D]
  A* pS = qS + kBr * D;                // [kBr][kBc]
  const int64_t bh = blockIdx.x, q0 = int64_t(blockIdx.y) * kBr;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* qh = headOf(q, qs, bh, g.heads);
  const T* kh = headOf(k, ks, bh, g.heads);
  const T* vh = headOf(v, vs, bh, g.heads);
  loadRows<D>(qS, qh, qs.t, q0, g.tq);
  const A scale = A(g.scale);
  A m[kRows], l[kRows], acc[kRows][kPer];
#pragma unroll
  for (int r = 0; r < kRows; r++) {
    m[r] = negInf<A>();
    l[r] = 0;
#pragma unroll
    for (int c = 0; c < kPer; c++) acc[r][c] = 0;
  }
  const int64_t kEnd = g.causal ? min(g.tk, q0 + kBr) : g.tk;
  for (int64_t k0 = 0; k0 < kEnd; k0 += kBc) {
    __syncthreads();  // the previous tile's readers are done (and the q rows are in place)
    loadTransposed<D>(kT, kh, ks.t, k0, g.tk);
    loadTransposed<D>(vT, vh, vs.t, k0, g.tk);
    __syncthreads();
    A s[kRows];
#pragma unroll
    for (int r = 0; r < kRows; r++) s[r] = 0;
#pragma unroll 16
    for (int d = 0; d < D; d++) {
      const A kv = kT[d * kPad + lane];
#pragma unroll
      for (int r = 0; r < kRows; r++) s[r] += qS[(warp * kRows + r) * D + d] * kv;
    }
    const int64_t j = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRows; r++) {
      const int64_t i = q0 + warp * kRows + r;
      const bool ok = visible(i, j, g.tk, g.causal);
      const A sc = ok ? s[r] * scale : negInf<A>();
      const A mNew = maxNan(m[r], warpMax(sc));
      const bool none = mNew == negInf<A>();  // nothing visible yet: keep everything at 0
      const A p = ok && !none ? exp(sc - mNew) : A(0);
      const A alpha = m[r] == negInf<A>() ? A(0) : exp(m[r] - mNew);
      l[r] = l[r] * alpha + warpSum(p);
      m[r] = mNew;
#pragma unroll
      for (int c = 0; c < kPer; c++) acc[r][c] *= alpha;
      pS[(warp * kRows + r) * kBc + lane] = p;
    }
    __syncwarp();
    accumulateTile(acc, pS, vT, warp, lane);
  }
  T* oh = headOf(o, os, bh, g.heads);
#pragma unroll
  for (int r = 0; r < kRows; r++) {
    const int64_t i = q0 + warp * kRows + r;
    if (i >= g.tq) continue;
    const A inv = l[r] > A(0) ? A(1) / l[r] : A(0);  // no keys at all (tk = 0): zeros, as the composed ops
#pragma unroll
    for (int c = 0; c < kPer; c++) cu::st(oh + i * os.t + lane + 32 * c, acc[r][c] * inv);
    if (lane == 0) lse[bh * g.tq + i] = m[r] + log(l[r]);
  }
}

// dvec[row] = sum_d dO[row, d] * o[row, d]: the softmax backward's row term. One warp per row:
// lane l sums d = l, l + 32, ... in order (fused multiply-adds spelled out, so the compiler cannot
// contract the two kernels differently), then the warp adds lanes at distances 16, 8, ..., 1.
// The fallback for rows off the 16-byte grid; attnRowDotVec below gives the same bits.
template <typename T, int D>
__global__ void attnRowDot(const T* o, CudaAttnStrides os, const T* dO, CudaAttnStrides gs, Acc<T>* dvec,
                           CudaAttnShape g) {
  using A = Acc<T>;
  const int64_t row = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= g.batch * g.heads * g.tq) return;
  const int64_t bh = row / g.tq, i = row % g.tq;
  const T* orow = headOf(o, os, bh, g.heads) + i * os.t;
  const T* grow = headOf(dO, gs, bh, g.heads) + i * gs.t;
  A s = 0;
#pragma unroll
  for (int c = 0; c < D / 32; c++) s = cu::fmaRn(A(cu::ld(orow + lane + 32 * c)), A(cu::ld(grow + lane + 32 * c)), s);
  s = warpSum(s);
  if (lane == 0) dvec[row] = s;
}

constexpr int kDotThreads = 256;

// attnRowDot with 16-byte loads: kVec (V) elements per load, P = 32 / V threads per row, V rows per
// warp. Thread j of a row holds the sums of attnRowDot's lanes jV .. jV + V - 1 (the same products
// in the same order), then adds them in attnRowDot's order: distances 16 .. V across threads by
// shuffles, V/2 .. 1 in registers. Every row starts on the 16-byte grid (checked by the launcher).
template <typename T, int D>
__global__ void __launch_bounds__(kDotThreads)
    attnRowDotVec(const T* o, CudaAttnStrides os, const T* dO, CudaAttnStrides gs, Acc<T>* dvec, CudaAttnShape g) {
  using A = Acc<T>;
  constexpr int V = cu::kVec<T>, P = 32 / V;
  const int64_t row = (int64_t(blockIdx.x) * kDotThreads + threadIdx.x) / P;
  const int j = threadIdx.x % P;
  const bool live = row < g.batch * g.heads * g.tq;  // dead threads still take part in the shuffles
  A s[V];
#pragma unroll
  for (int k = 0; k < V; k++) s[k] = 0;
  if (live) {
    const int64_t bh = row / g.tq, i = row % g.tq;
    const T* orow = headOf(o, os, bh, g.heads) + i * os.t + j * V;
    const T* grow = headOf(dO, gs, bh, g.heads) + i * gs.t + j * V;
#pragma unroll
    for (int c = 0; c < D / 32; c++) {
      const cu::Vec<T> ov = *reinterpret_cast<const cu::Vec<T>*>(orow + 32 * c);
      const cu::Vec<T> gv = *reinterpret_cast<const cu::Vec<T>*>(grow + 32 * c);
#pragma unroll
      for (int k = 0; k < V; k++) s[k] = cu::fmaRn(A(cu::ld(&ov.v[k])), A(cu::ld(&gv.v[k])), s[k]);
    }
  }
#pragma unroll
  for (int d = 16; d >= V; d /= 2) {
#pragma unroll
    for (int k = 0; k < V; k++) s[k] += __shfl_xor_sync(kFull, s[k], d / V);
  }
#pragma unroll
  for (int d = V / 2; d >= 1; d /= 2) {
#pragma unroll
    for (int k = 0; k < d; k++) s[k] = s[k] + s[k + d];
  }
  if (live && j == 0) dvec[row] = s[0];
}

// Every row of o and dO on the 16-byte grid: base aligned, batch/head/position strides whole vectors.
template <typename T>
bool dotRowsAligned(const T* o, const CudaAttnStrides& os, const T* dO, const CudaAttnStrides& gs) {
  const auto whole = [](const CudaAttnStrides& s) {
    return s.b % cu::kVec<T> == 0 && s.h % cu::kVec<T> == 0 && s.t % cu::kVec<T> == 0;
  };
  return cu::aligned16(o) && cu::aligned16(dO) && whole(os) && whole(gs);
}

// dK and dV of kBr keys per block: grid (batch * heads, key tiles of kBr). Each warp owns kRows
// keys; per query tile lane i recomputes p[i, j] = exp(scale * q_i·k_j - lse_i) and
// ds = p * (dO_i·v_j - dvec_i); then, lanes over d, dV_j += p dO_i and dK_j += ds q_i.
template <typename T, int D>
__global__ void __launch_bounds__(kWarps * 32)
    attnBackwardKV(const T* q, CudaAttnStrides qs, const T* k, CudaAttnStrides ks, const T* v, CudaAttnStrides vs,
                   const T* dO, CudaAttnStrides gs, const Acc<T>* lse, const Acc<T>* dvec, T* dk, CudaAttnStrides dks,
                   T* dv, CudaAttnStrides dvs, CudaAttnShape g) {
  using A = Acc<T>;
  constexpr int kPer = D / 32;
  MT_DYNAMIC_SHARED(unsigned char, smem);
  A* qT = reinterpret_cast<A*>(smem);  // [D][kPad]
  A* gT = qT + D * kPad;               // [D][kPad]
  A* kS = gT + D * kPad;               // [kBr][D]
  A* vS = kS + kBr * D;                // [kBr][D]
  A* pS = vS + kBr * D;                // [kBr][kBc]
  A* dsS = pS + kBr * kBc;             // [kBr][kBc]
  A* lseS = dsS + kBr * kBc;           // [kBc]
  A* dvecS = lseS + kBc;               // [kBc]
  const int64_t bh = blockIdx.x, k0 = int64_t(blockIdx.y) * kBr;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* qh = headOf(q, qs, bh, g.heads);
  const T* gh = headOf(dO, gs, bh, g.heads);
  loadRows<D>(kS, headOf(k, ks, bh, g.heads), ks.t, k0, g.tk);
  loadRows<D>(vS, headOf(v, vs, bh, g.heads), vs.t, k0, g.tk);
  const A scale = A(g.scale);
  A dK[kRows][kPer], dV[kRows][kPer];
#pragma unroll
  for (int r = 0; r < kRows; r++)
#pragma unroll
    for (int c = 0; c < kPer; c++) dK[r][c] = dV[r][c] = 0;
  // Causal: queries before the first key of this block see none of its keys.
  for (int64_t i0 = g.causal ? (k0 / kBc) * kBc : 0; i0 < g.tq; i0 += kBc) {
    __syncthreads();
    loadTransposed<D>(qT, qh, qs.t, i0, g.tq);
    loadTransposed<D>(gT, gh, gs.t, i0, g.tq);
    if (threadIdx.x < kBc) {
      const int64_t i = i0 + threadIdx.x;
      lseS[threadIdx.x] = i < g.tq ? lse[bh * g.tq + i] : A(0);
      dvecS[threadIdx.x] = i < g.tq ? dvec[bh * g.tq + i] : A(0);
    }
    __syncthreads();
    A s[kRows], dp[kRows];
    scoreTiles<D>(s, dp, kS, qT, vS, gT, warp, lane);
    const int64_t i = i0 + lane;
#pragma unroll
    for (int r = 0; r < kRows; r++) {
      const int64_t j = k0 + warp * kRows + r;
      const bool ok = i < g.tq && visible(i, j, g.tk, g.causal);
      const A p = ok ? exp(s[r] * scale - lseS[lane]) : A(0);
      pS[(warp * kRows + r) * kBc + lane] = p;
      dsS[(warp * kRows + r) * kBc + lane] = ok ? p * (dp[r] - dvecS[lane]) : A(0);
    }
    __syncwarp();
#pragma unroll 8
    for (int ii = 0; ii < kBc; ii++) {
#pragma unroll
      for (int c = 0; c < kPer; c++) {
        const A qv = qT[(lane + 32 * c) * kPad + ii], gv = gT[(lane + 32 * c) * kPad + ii];
#pragma unroll
        for (int r = 0; r < kRows; r++) {
          dV[r][c] += pS[(warp * kRows + r) * kBc + ii] * gv;
          dK[r][c] += dsS[(warp * kRows + r) * kBc + ii] * qv;
        }
      }
    }
  }
  T* dkh = headOf(dk, dks, bh, g.heads);
  T* dvh = headOf(dv, dvs, bh, g.heads);
#pragma unroll
  for (int r = 0; r < kRows; r++) {
    const int64_t j = k0 + warp * kRows + r;
    if (j >= g.tk) continue;
#pragma unroll
    for (int c = 0; c < kPer; c++) {
      cu::st(dkh + j * dks.t + lane + 32 * c, dK[r][c] * scale);
      cu::st(dvh + j * dvs.t + lane + 32 * c, dV[r][c]);
    }
  }
}

// dQ of kBr queries per block: grid (batch * heads, query tiles of kBr); lane j recomputes ds for
// key k0 + j, then, lanes over d, dQ_i += ds k_j.
template <typename T, int D>
__global__ void __launch_bounds__(kWarps * 32)
    attnBackwardQ(const T* q, CudaAttnStrides qs, const T* k, CudaAttnStrides ks, const T* v, CudaAttnStrides vs,
                  const T* dO, CudaAttnStrides gs, const Acc<T>* lse, const Acc<T>* dvec, T* dq, CudaAttnStrides dqs,
                  CudaAttnShape g) {
  using A = Acc<T>;
  constexpr int kPer = D / 32;
  MT_DYNAMIC_SHARED(unsigned char, smem);
  A* kT = reinterpret_cast<A*>(smem);  // [D][kPad]
  A* vT = kT + D * kPad;               // [D][kPad]
  A* qS = vT + D * kPad;               // [kBr][D]
  A* gS = qS + kBr * D;                // [kBr][D]
  A* dsS = gS + kBr * D;               // [kBr][kBc]
  const int64_t bh = blockIdx.x, q0 = int64_t(blockIdx.y) * kBr;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* kh = headOf(k, ks, bh, g.heads);
  const T* vh = headOf(v, vs, bh, g.heads);
  loadRows<D>(qS, headOf(q, qs, bh, g.heads), qs.t, q0, g.tq);
  loadRows<D>(gS, headOf(dO, gs, bh, g.heads), gs.t, q0, g.tq);
  const A scale = A(g.scale);
  A lseR[kRows], dvecR[kRows], dQ[kRows][kPer];
#pragma unroll
  for (int r = 0; r < kRows; r++) {
    const int64_t i = q0 + warp * kRows + r;
    lseR[r] = i < g.tq ? lse[bh * g.tq + i] : A(0);
    dvecR[r] = i < g.tq ? dvec[bh * g.tq + i] : A(0);
#pragma unroll
    for (int c = 0; c < kPer; c++) dQ[r][c] = 0;
  }
  const int64_t kEnd = g.causal ? min(g.tk, q0 + kBr) : g.tk;
  for (int64_t k0 = 0; k0 < kEnd; k0 += kBc) {
    __syncthreads();
    loadTransposed<D>(kT, kh, ks.t, k0, g.tk);
    loadTransposed<D>(vT, vh, vs.t, k0, g.tk);
    __syncthreads();
    A s[kRows], dp[kRows];
    scoreTiles<D>(s, dp, qS, kT, gS, vT, warp, lane);
    const int64_t j = k0 + lane;
#pragma unroll
    for (int r = 0; r < kRows; r++) {
      const int64_t i = q0 + warp * kRows + r;
      const bool ok = i < g.tq && visible(i, j, g.tk, g.causal);
      const A p = ok ? exp(s[r] * scale - lseR[r]) : A(0);
      dsS[(warp * kRows + r) * kBc + lane] = ok ? p * (dp[r] - dvecR[r]) : A(0);
    }
    __syncwarp();
    accumulateTile(dQ, dsS, kT, warp, lane);
  }
  T* dqh = headOf(dq, dqs, bh, g.heads);
#pragma unroll
  for (int r = 0; r < kRows; r++) {
    const int64_t i = q0 + warp * kRows + r;
    if (i >= g.tq) continue;
#pragma unroll
    for (int c = 0; c < kPer; c++) cu::st(dqh + i * dqs.t + lane + 32 * c, dQ[r][c] * scale);
  }
}

template <typename A>
constexpr size_t forwardSmem(int d) {
  return size_t(2 * d * kPad + kBr * d + kBr * kBc) * sizeof(A);
}
template <typename A>
constexpr size_t backwardKVSmem(int d) {
  return size_t(2 * d * kPad + 2 * kBr * d + 2 * kBr * kBc + 2 * kBc) * sizeof(A);
}
template <typename A>
constexpr size_t backwardQSmem(int d) {
  return size_t(2 * d * kPad + 2 * kBr * d + kBr * kBc) * sizeof(A);
}

// Kernels needing more than the default 48 KiB of dynamic shared memory must say so first.
template <typename K>
void allowSmem(K kernel, size_t bytes, const char* name) {
  if (bytes > 48 * 1024)
    cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
              (std::string("cudaFuncSetAttribute(") + name + ")").c_str());
}

int64_t tilesOf(int64_t n, int64_t per) { return (n + per - 1) / per; }

// The bf16/f16 kernel family, from MESHTRAIN_ATTENTION: unset (or `cudnn`) cuDNN's fused attention
// graphs (attention_cudnn.cc) where cuDNN takes the problem (bf16/f16, head dim 64 or 128, rows
// 16-byte aligned, the library loaded) and the fa2 ones otherwise (the lse convention is shared, so
// either forward pairs with either backward); `fa2` the mma.sync ones (attention_fa2*.cu) where they
// apply and the WMMA tensor-core ones elsewhere; `tc` the WMMA ones (attention_tc.cu) always; `simt`
// the CUDA-core ones. cuDNN became the default once the H200 run of stop 21 measured it: GPT-2 124M
// bf16 step 17.7-18.0 ms (fa2) -> 16.4 ms with its deterministic backward (15.9 without), the
// suites passing.
// Read at every call (one getenv), so a test or a benchmark can switch families within one process.
enum class AttnFamily { Tc, Simt, Fa2, Cudnn };
AttnFamily attnFamily() {
  const char* e = std::getenv("MESHTRAIN_ATTENTION");
  if (!e || !*e) return AttnFamily::Cudnn;
  if (std::strcmp(e, "tc") == 0) return AttnFamily::Tc;
  if (std::strcmp(e, "simt") == 0) return AttnFamily::Simt;
  if (std::strcmp(e, "fa2") == 0) return AttnFamily::Fa2;
  if (std::strcmp(e, "cudnn") == 0) return AttnFamily::Cudnn;
  cu::fail(std::string("MESHTRAIN_ATTENTION: unknown kernel family '") + e + "' (tc, simt, fa2 or cudnn)");
  return AttnFamily::Tc;
}

// fa2's kernels serve the fa2 family and what cuDNN leaves to it.
bool fa2Family(AttnFamily f) { return f == AttnFamily::Fa2 || f == AttnFamily::Cudnn; }

bool useTensorCores(int dtype, const CudaAttnShape& g) {
  return attnFamily() != AttnFamily::Simt && cudaAttentionTcApplies(dtype, g);
}

// The fa2 family (and what cuDNN leaves to it): bf16/f16 forwards take attention_fa2.cu; what it
// does not cover keeps the kernels chosen above.
bool useFa2Forward(int dtype, const CudaAttnShape& g) {
  return fa2Family(attnFamily()) && cudaAttentionFa2Applies(dtype, g);
}

void checkShape(const char* op, const CudaAttnShape& g) {
  if (g.dim != 32 && g.dim != 64 && g.dim != 128)
    cu::fail(std::string(op) + ": head dim " + std::to_string(g.dim) +
             " has no fused CUDA kernel (32, 64 or 128)");
  if (g.batch < 0 || g.heads < 1 || g.tq < 0 || g.tk < 0)
    cu::fail(std::string(op) + ": bad shape batch " + std::to_string(g.batch) + ", heads " + std::to_string(g.heads) +
             ", Tq " + std::to_string(g.tq) + ", Tk " + std::to_string(g.tk));
  if (g.batch * g.heads > (int64_t(1) << 31) - 1)
    cu::fail(std::string(op) + ": more than 2^31 - 1 (batch, head) pairs");
  if (tilesOf(g.tq, kBr) > 65535 || tilesOf(g.tk, kBr) > 65535)
    cu::fail(std::string(op) + ": sequence longer than " + std::to_string(65535 * kBr));
}

// Binds D to the head dim (checked by checkShape).
#define MT_ATTN_DIM(DIM, ...)                         \
  switch (DIM) {                                      \
    case 32: { constexpr int D = 32; __VA_ARGS__; break; }   \
    case 64: { constexpr int D = 64; __VA_ARGS__; break; }   \
    default: { constexpr int D = 128; __VA_ARGS__; break; }  \
  }

}  // namespace

void cudaAttentionForward(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                          const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs, void* o,
                          const CudaAttnStrides& os, void* lse) {
  const char* op = "scaledDotProductAttention";
  checkShape(op, g);
  if (g.batch == 0 || g.tq == 0) return;
  if (attnFamily() == AttnFamily::Cudnn && cudnnAttentionForward(dev, dtype, g, q, qs, k, ks, v, vs, o, os, lse)) return;
  if (useFa2Forward(dtype, g)) {
    cudaAttentionForwardFa2(dev, dtype, g, q, qs, k, ks, v, vs, o, os, lse);
    return;
  }
  if (useTensorCores(dtype, g)) {
    cudaAttentionForwardTc(dev, dtype, g, q, qs, k, ks, v, vs, o, os, lse);
    return;
  }
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const dim3 grid(unsigned(g.batch * g.heads), unsigned(tilesOf(g.tq, kBr)));
  MT_CU_FLOAT(dtype, op, MT_ATTN_DIM(g.dim, {
    auto kern = attnForward<T, D>;
    const size_t smem = forwardSmem<Acc<T>>(D);
    allowSmem(kern, smem, "attnForward");
    MT_LAUNCH(kern, grid, kWarps * 32, smem, s, static_cast<const T*>(q), qs, static_cast<const T*>(k), ks,
              static_cast<const T*>(v), vs, static_cast<T*>(o), os, static_cast<Acc<T>*>(lse), g);
  }));
  cu::checkLaunch("attnForward");
}

int64_t cudaAttentionScratch(const CudaAttnShape& g) { return g.batch * g.heads * g.tq; }

void cudaAttentionBackward(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                           const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs,
                           const void* o, const CudaAttnStrides& os, const void* dO, const CudaAttnStrides& gs,
                           const void* lse, void* dq, const CudaAttnStrides& dqs, void* dk, const CudaAttnStrides& dks,
                           void* dv, const CudaAttnStrides& dvs, void* dvec) {
  const char* op = "scaledDotProductAttention backward";
  checkShape(op, g);
  if (g.batch == 0) return;
  if (attnFamily() == AttnFamily::Cudnn && cudnnAttentionBackward(dev, dtype, g, q, qs, k, ks, v, vs, o, os, dO, gs, lse,
                                                                  dq, dqs, dk, dks, dv, dvs, dvec))
    return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const unsigned bh = unsigned(g.batch * g.heads);
  MT_CU_FLOAT(dtype, op, MT_ATTN_DIM(g.dim, {
    using A = Acc<T>;
    const T* qp = static_cast<const T*>(q);
    const T* kp = static_cast<const T*>(k);
    const T* vp = static_cast<const T*>(v);
    const T* gp = static_cast<const T*>(dO);
    const A* lp = static_cast<const A*>(lse);
    A* dvp = static_cast<A*>(dvec);
    const int64_t rows = g.batch * g.heads * g.tq;
    if (rows > 0) {
      const T* op = static_cast<const T*>(o);
      if (dotRowsAligned(op, os, gp, gs)) {
        auto dotVec = attnRowDotVec<T, D>;
        const int64_t perBlock = kDotThreads / (32 / cu::kVec<T>);
        MT_LAUNCH(dotVec, unsigned(tilesOf(rows, perBlock)), kDotThreads, 0, s, op, os, gp, gs, dvp, g);
        cu::checkLaunch("attnRowDotVec");
      } else {
        auto dot = attnRowDot<T, D>;
        MT_LAUNCH(dot, unsigned(tilesOf(rows, kWarps)), kWarps * 32, 0, s, op, os, gp, gs, dvp, g);
        cu::checkLaunch("attnRowDot");
      }
    }
    if (useTensorCores(dtype, g)) {
      if (fa2Family(attnFamily()) && cudaAttentionFa2BwdApplies(dtype, g))
        cudaAttentionBackwardFa2(dev, dtype, g, q, qs, k, ks, v, vs, dO, gs, lse, dvec, dq, dqs, dk, dks, dv, dvs);
      else
        cudaAttentionBackwardTc(dev, dtype, g, q, qs, k, ks, v, vs, dO, gs, lse, dvec, dq, dqs, dk, dks, dv, dvs);
      return;
    }
    if (g.tk > 0) {
      auto kv = attnBackwardKV<T, D>;
      const size_t smem = backwardKVSmem<A>(D);
      allowSmem(kv, smem, "attnBackwardKV");
      MT_LAUNCH(kv, (dim3(bh, unsigned(tilesOf(g.tk, kBr)))), kWarps * 32, smem, s, qp, qs, kp, ks, vp, vs, gp, gs, lp,
                dvp, static_cast<T*>(dk), dks, static_cast<T*>(dv), dvs, g);
      cu::checkLaunch("attnBackwardKV");
    }
    if (g.tq > 0) {
      auto bq = attnBackwardQ<T, D>;
      const size_t smem = backwardQSmem<A>(D);
      allowSmem(bq, smem, "attnBackwardQ");
      MT_LAUNCH(bq, (dim3(bh, unsigned(tilesOf(g.tq, kBr)))), kWarps * 32, smem, s, qp, qs, kp, ks, vp, vs, gp, gs, lp,
                dvp, static_cast<T*>(dq), dqs, g);
      cu::checkLaunch("attnBackwardQ");
    }
  }));
}

}  // namespace mt
