// FA2-style attention backward for bf16/f16, head dims 64 and 128, on PTX mma.sync m16n8k16
// (mma_sync.cuh). Unlike attention_tc.cu's WMMA kernels, scores never leave registers: a product's
// C fragments become the next product's A fragment in place (two adjacent n8 tiles are one k16
// tile), and each lane applies the softmax step to the elements it holds. Two kernels, no atomics
// (deterministic): dK/dV per block of 64 keys, each warp's 16 keys held as A fragments, query
// tiles streamed through shared memory; dQ per block of 64 queries, key tiles streamed (or, at head
// dim 64 with MESHTRAIN_FA2_BWD_ROWS=32, of 128: 32 queries per warp as two m16 tiles that share
// every K and V fragment read). Both step through a tile 16 rows at a time, so a warp holds only 2
// n8 tiles of scores and of dP per m16 tile. Operand fragments come from shared memory by ldmatrix
// (.trans where the k pairs span rows); streamed tiles are double-buffered, the next one's cp.async
// copies in flight while this one is used.
// Probabilities and dS are rounded to the input dtype before their products, as attention_tc.cu.
#include <cstdint>
#include <string>
#include "cuda/attention.h"
#include "cuda/attention_common.cuh"
#include "cuda/attention_fa2_bwd.h"
#include "cuda/common.cuh"
#include "cuda/cp_async.cuh"
#include "cuda/func_smem.h"
#include "cuda/mma_sync.cuh"
#include "cuda/runtime.h"

namespace mt {
namespace {

using attn16::Chunk;
using attn16::headOf;
using attn16::maxNan;
using attn16::vecOk;

using mma::A16;
using mma::B16;
using mma::C16;

constexpr int kWarps = 4;
constexpr int kTile = 64;  // rows a block owns, and rows of a streamed tile
constexpr int kStep = 16;  // rows a warp owns, and the streamed rows it takes per step
constexpr float kLog2e = 1.4426950408889634f;

// 16-bit tile row: 16-byte aligned, and D + 8 halves is 4 banks past a multiple of 32, so the 8
// rows x 16 bytes each ldmatrix phase reads fall in 32 different banks.
template <int D>
constexpr int kLd = D + 8;

// Which operands may be read 16 bytes at a time (16-byte aligned base, strides multiples of 8),
// and which outputs written 4 bytes at a time (4-byte aligned base, even strides).
enum : int { kVecQ = 1, kVecK = 2, kVecV = 4, kVecG = 8, kPairDQ = 16, kPairDK = 32, kPairDV = 64 };

// Rows [t0, t0 + kTile) of one head into dst[r * ld + d]; rows at or past `limit` as 0. With
// `vec`, 16-byte cp.async copies: they land at the caller's cpasync::wait (then a barrier).
template <int D, typename T>
__device__ __forceinline__ void loadTile(T* dst, const T* src, int64_t ts, int64_t t0, int64_t limit, bool vec) {
  constexpr int ld = kLd<D>;
  if (vec) {
    constexpr int perRow = D / 8;
#pragma unroll 1
    for (int i = threadIdx.x; i < kTile * perRow; i += kWarps * 32) {
      const int r = i / perRow, d = (i % perRow) * 8;
      const int64_t t = t0 + r;
      if (t < limit) cpasync::copy16(dst + r * ld + d, src + t * ts + d);
      else *reinterpret_cast<Chunk*>(dst + r * ld + d) = Chunk{{0u, 0u, 0u, 0u}};
    }
    return;
  }
#pragma unroll 1
  for (int i = threadIdx.x; i < kTile * D; i += kWarps * 32) {
    const int r = i / D, d = i % D;
    const int64_t t = t0 + r;
    if (t < limit) dst[r * ld + d] = src[t * ts + d];
    else cu::st(dst + r * ld + d, 0.0f);
  }
}

// Fragment loads from a shared-memory tile (row stride ld, rows 16-byte aligned), each one
// ldmatrix .x4 (mma_sync.cuh): lane l passes the address of row l % 8 of 8x8 matrix l / 8.
// A: the 16x16 block at `s` (matrices: rows 0-7 | 8-15 by cols 0-7, then the same at cols 8-15).
template <typename T>
__device__ __forceinline__ A16 fragA(const T* s, int ld, int lane) {
  const int i = lane >> 3;
  A16 a;
  mma::ldsm4(a.r, s + ((i & 1) * 8 + (lane & 7)) * ld + (i >> 1) * 8);
  return a;
}
// B (k x n) of two adjacent n8 tiles from a tile whose rows are n (k contiguous: Qᵀ from Q's
// rows): rows n0..n0+15 at `s`, k over the 16 columns from `s`; b[0] for rows 0-7, b[1] for 8-15.
template <typename T>
__device__ __forceinline__ void fragB2RowsN(B16 (&b)[2], const T* s, int ld, int lane) {
  const int i = lane >> 3;
  uint32_t r[4];
  mma::ldsm4(r, s + ((i >> 1) * 8 + (lane & 7)) * ld + (i & 1) * 8);
  b[0] = B16{{r[0], r[1]}};
  b[1] = B16{{r[2], r[3]}};
}
// B (k x n) of two adjacent n8 tiles from a tile whose rows are k (dO as the k = query operand):
// 16 rows from `s`, n over the 16 columns from `s`, transposed by ldmatrix .trans; b[0] for
// columns 0-7, b[1] for 8-15.
template <typename T>
__device__ __forceinline__ void fragB2RowsK(B16 (&b)[2], const T* s, int ld, int lane) {
  const int i = lane >> 3;
  uint32_t r[4];
  mma::ldsm4t(r, s + ((i & 1) * 8 + (lane & 7)) * ld + (i >> 1) * 8);
  b[0] = B16{{r[0], r[1]}};
  b[1] = B16{{r[2], r[3]}};
}

// Two adjacent n8 C tiles (16 rows x 16 columns) as one A tile of the input dtype.
template <typename T>
__device__ __forceinline__ A16 toA(const float (&x)[2][4]) {
  return A16{{mma::pack2<T>(x[0][0], x[0][1]), mma::pack2<T>(x[0][2], x[0][3]), mma::pack2<T>(x[1][0], x[1][1]),
              mma::pack2<T>(x[1][2], x[1][3])}};
}

// Element e of a lane's C fragment: row offset (g or g + 8) and column offset (2t or 2t + 1).
__device__ __forceinline__ int rowOf(int lane, int e) { return (lane >> 2) + (e >= 2 ? 8 : 0); }
__device__ __forceinline__ int colOf(int lane, int e) { return 2 * (lane & 3) + (e & 1); }

// 16 rows x D of C fragments (times `scale`) to rows row0.. of a head; rows at or past `limit`
// skipped. `pair`: the output takes 4-byte stores (the two columns a lane holds are adjacent).
template <int D, typename T>
__device__ __forceinline__ void storeRows(T* head, int64_t ts, int64_t row0, int64_t limit, const C16 (&acc)[D / 8],
                                          float scale, bool pair, int lane) {
#pragma unroll
  for (int h = 0; h < 2; h++) {
    const int64_t r = row0 + (lane >> 2) + 8 * h;
    if (r >= limit) continue;
    T* row = head + r * ts + 2 * (lane & 3);
#pragma unroll
    for (int n = 0; n < D / 8; n++) {
      const float a = acc[n].c[2 * h] * scale, b = acc[n].c[2 * h + 1] * scale;
      if (pair) {
        *reinterpret_cast<uint32_t*>(row + n * 8) = mma::pack2<T>(a, b);
      } else {
        cu::st(row + n * 8, a);
        cu::st(row + n * 8 + 1, b);
      }
    }
  }
}

// dK, dV of the 64 keys k0.. : grid (batch * heads, key tiles). Warp w owns keys kw = k0 + 16w..
// as A fragments of K and V; per 16 queries of a streamed tile it forms Sᵀ = K_w Qᵀ and
// dPᵀ = V_w dOᵀ (2 n8 tiles each), Pᵀ = exp2(Sᵀ·scale·log2e − lse·log2e), dSᵀ = Pᵀ∘(dPᵀ − dvec),
// then dV_w += Pᵀ dO and dK_w += dSᵀ Q with Pᵀ and dSᵀ as A fragments. dK, dV are written once.
template <typename T, int D>
__global__ void __launch_bounds__(kWarps * 32)
    attnFa2BackwardKV(const T* q, CudaAttnStrides qs, const T* k, CudaAttnStrides ks, const T* v, CudaAttnStrides vs,
                      const T* dO, CudaAttnStrides gs, const float* lse, const float* dvec, T* dk, CudaAttnStrides dks,
                      T* dv, CudaAttnStrides dvs, int vec, CudaAttnShape g) {
  constexpr int ld = kLd<D>, kChunks = D / 16, kN = D / 8;
  MT_DYNAMIC_SHARED(unsigned char, smem);
  // Two buffers of a Q tile, a dO tile, and their rows' lse·log2e and dvec: the next tile loads
  // while this one is used. K and V go through buffer 1 first, while the first Q tile loads.
  constexpr int kBuf = 2 * kTile * ld + 4 * kTile;  // elements of T per buffer
  T* buf0 = reinterpret_cast<T*>(smem);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.x, k0 = int64_t(blockIdx.y) * kTile, kw = k0 + warp * kStep;
  const T* qh = headOf(q, qs, bh, g.heads);
  const T* gh = headOf(dO, gs, bh, g.heads);
  // Tile i0's queries into buffer b (the copies are this thread's next cp.async group).
  auto load = [&](int64_t i0, int b) {
    T* qS = buf0 + b * kBuf;
    T* gS = qS + kTile * ld;
    float* lseS = reinterpret_cast<float*>(gS + kTile * ld);
    loadTile<D>(qS, qh, qs.t, i0, g.tq, vec & kVecQ);
    loadTile<D>(gS, gh, gs.t, i0, g.tq, vec & kVecG);
    if (threadIdx.x < kTile) {
      const int64_t i = i0 + threadIdx.x;
      lseS[threadIdx.x] = i < g.tq ? lse[bh * g.tq + i] * kLog2e : 0.0f;
      lseS[kTile + threadIdx.x] = i < g.tq ? dvec[bh * g.tq + i] : 0.0f;
    }
    cpasync::commit();
  };
  loadTile<D>(buf0 + kBuf, headOf(k, ks, bh, g.heads), ks.t, k0, g.tk, vec & kVecK);
  loadTile<D>(buf0 + kBuf + kTile * ld, headOf(v, vs, bh, g.heads), vs.t, k0, g.tk, vec & kVecV);
  cpasync::commit();
  // Causal: queries before k0 see none of these keys (k0 is a multiple of the tile).
  const int64_t iFirst = g.causal ? k0 : 0;
  if (iFirst < g.tq) load(iFirst, 0);
  else cpasync::commit();
  cpasync::wait<1>();  // K and V
  __syncthreads();
  A16 kA[kChunks], vA[kChunks];
#pragma unroll
  for (int c = 0; c < kChunks; c++) {
    kA[c] = fragA(buf0 + kBuf + warp * kStep * ld + c * 16, ld, lane);
    vA[c] = fragA(buf0 + kBuf + kTile * ld + warp * kStep * ld + c * 16, ld, lane);
  }
  C16 dK[kN], dV[kN];
#pragma unroll
  for (int n = 0; n < kN; n++) dK[n] = dV[n] = C16{{0.0f, 0.0f, 0.0f, 0.0f}};
  const float scale2 = float(g.scale) * kLog2e;
  const bool idle = kw >= g.tk;  // a warp past the last key still takes part in the loads
  int b = 0;
  for (int64_t i0 = iFirst; i0 < g.tq; i0 += kTile, b ^= 1) {
    __syncthreads();  // the other buffer's readers (K/V fragments or the previous tile) are done
    if (i0 + kTile < g.tq) load(i0 + kTile, b ^ 1);
    else cpasync::commit();  // an empty group: one group per tile, so wait<1> below is this tile's
    cpasync::wait<1>();
    __syncthreads();
    const T* qS = buf0 + b * kBuf;
    const T* gS = qS + kTile * ld;
    const float* lseS = reinterpret_cast<const float*>(gS + kTile * ld);
    const float* dvecS = lseS + kTile;
    if (idle) continue;
    // Masks only where some pair is invisible: the diagonal tile, the last query or key tile.
    const bool edge = (g.causal && i0 < k0 + kTile) || i0 + kTile > g.tq || k0 + kTile > g.tk;
#pragma unroll 1
    for (int s = 0; s < kTile / kStep; s++) {
      const int64_t c0 = i0 + s * kStep;
      if (c0 >= g.tq) break;
      if (g.causal && c0 + kStep - 1 < kw) continue;  // these queries precede every key of the warp
      const T* qRows = qS + s * kStep * ld;
      const T* gRows = gS + s * kStep * ld;
      C16 sT[2], dpT[2];
#pragma unroll
      for (int n = 0; n < 2; n++) sT[n] = dpT[n] = C16{{0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
      for (int c = 0; c < kChunks; c++) {
        B16 bq[2], bg[2];
        fragB2RowsN(bq, qRows + c * 16, ld, lane);
        fragB2RowsN(bg, gRows + c * 16, ld, lane);
#pragma unroll
        for (int n = 0; n < 2; n++) {
          mma::mma16816<T>(sT[n], kA[c], bq[n]);
          mma::mma16816<T>(dpT[n], vA[c], bg[n]);
        }
      }
      float p[2][4], ds[2][4];
#pragma unroll
      for (int n = 0; n < 2; n++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int col = s * kStep + n * 8 + colOf(lane, e);  // the query, within the tile
          float pe = exp2f(sT[n].c[e] * scale2 - lseS[col]);
          float dse = pe * (dpT[n].c[e] - dvecS[col]);
          if (edge) {
            const int64_t i = i0 + col, j = kw + rowOf(lane, e);
            if (i >= g.tq || j >= g.tk || (g.causal && j > i)) pe = dse = 0.0f;
          }
          p[n][e] = pe;
          ds[n][e] = dse;
        }
      }
      const A16 pA = toA<T>(p), dsA = toA<T>(ds);
#pragma unroll
      for (int c = 0; c < kChunks; c++) {
        B16 bg[2], bq[2];
        fragB2RowsK(bg, gRows + c * 16, ld, lane);
        fragB2RowsK(bq, qRows + c * 16, ld, lane);
#pragma unroll
        for (int h = 0; h < 2; h++) {
          mma::mma16816<T>(dV[2 * c + h], pA, bg[h]);
          mma::mma16816<T>(dK[2 * c + h], dsA, bq[h]);
        }
      }
    }
  }
  cpasync::wait<0>();
  storeRows<D>(headOf(dk, dks, bh, g.heads), dks.t, kw, g.tk, dK, float(g.scale), vec & kPairDK, lane);
  storeRows<D>(headOf(dv, dvs, bh, g.heads), dvs.t, kw, g.tk, dV, 1.0f, vec & kPairDV, lane);
}

// dQ of the kWarps·16·MT queries from q0: grid (batch * heads, query blocks), the last blocks first
// (causal: the longest rows start first). Warp w owns queries qw = q0 + 16·MT·w.. as MT m16 tiles
// of A fragments of Q and dO; per 16 keys of a streamed tile S = Q_w Kᵀ, dP = dO_w Vᵀ,
// dS = P∘(dP − dvec), dQ_w += dS K. With MT = 2 every K and V fragment read feeds both tiles.
template <typename T, int D, int MT>
__global__ void __launch_bounds__(kWarps * 32)
    attnFa2BackwardQ(const T* q, CudaAttnStrides qs, const T* k, CudaAttnStrides ks, const T* v, CudaAttnStrides vs,
                     const T* dO, CudaAttnStrides gs, const float* lse, const float* dvec, T* dq, CudaAttnStrides dqs,
                     int vec, CudaAttnShape g) {
  constexpr int ld = kLd<D>, kChunks = D / 16, kN = D / 8, kQ = kWarps * kStep * MT;
  MT_DYNAMIC_SHARED(unsigned char, smem);
  // Two buffers of a K and a V tile: the next tile loads while this one is used. Q and dO (kQ rows
  // each) go where buffer 1 starts, while the first key tile loads; qBytes makes room for both.
  constexpr int kBuf = 2 * kTile * ld;  // elements of T per buffer
  T* buf0 = reinterpret_cast<T*>(smem);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t bh = blockIdx.x, q0 = int64_t(gridDim.y - 1 - blockIdx.y) * kQ, qw = q0 + warp * kStep * MT;
  const T* kh = headOf(k, ks, bh, g.heads);
  const T* vh = headOf(v, vs, bh, g.heads);
  auto load = [&](int64_t k0, int b) {
    loadTile<D>(buf0 + b * kBuf, kh, ks.t, k0, g.tk, vec & kVecK);
    loadTile<D>(buf0 + b * kBuf + kTile * ld, vh, vs.t, k0, g.tk, vec & kVecV);
    cpasync::commit();
  };
#pragma unroll
  for (int r = 0; r < kQ; r += kTile) {
    loadTile<D>(buf0 + kBuf + r * ld, headOf(q, qs, bh, g.heads), qs.t, q0 + r, g.tq, vec & kVecQ);
    loadTile<D>(buf0 + kBuf + (kQ + r) * ld, headOf(dO, gs, bh, g.heads), gs.t, q0 + r, g.tq, vec & kVecG);
  }
  cpasync::commit();
  const int64_t kEnd = g.causal ? min(g.tk, q0 + kQ) : g.tk;
  if (kEnd > 0) load(0, 0);
  else cpasync::commit();
  cpasync::wait<1>();  // Q and dO
  __syncthreads();
  A16 qA[MT][kChunks], gA[MT][kChunks];
  float lseR[MT][2], dvecR[MT][2];  // rows g and g + 8 of each of the warp's tiles
  int qReal[MT];                    // each tile's queries that exist
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
    const int64_t w = qw + kStep * mt;
#pragma unroll
    for (int c = 0; c < kChunks; c++) {
      qA[mt][c] = fragA(buf0 + kBuf + (w - q0) * ld + c * 16, ld, lane);
      gA[mt][c] = fragA(buf0 + kBuf + (kQ + w - q0) * ld + c * 16, ld, lane);
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int64_t i = w + (lane >> 2) + 8 * h;
      lseR[mt][h] = i < g.tq ? lse[bh * g.tq + i] * kLog2e : 0.0f;
      dvecR[mt][h] = i < g.tq ? dvec[bh * g.tq + i] : 0.0f;
    }
    qReal[mt] = int(max(int64_t(0), min(g.tq - w, int64_t(kStep))));
  }
  C16 dQ[MT][kN];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int n = 0; n < kN; n++) dQ[mt][n] = C16{{0.0f, 0.0f, 0.0f, 0.0f}};
  const float scale2 = float(g.scale) * kLog2e;
  const bool idle = qw >= g.tq;
  int b = 0;
  for (int64_t k0 = 0; k0 < kEnd; k0 += kTile, b ^= 1) {
    __syncthreads();  // the other buffer's readers (Q/dO fragments or the previous tile) are done
    if (k0 + kTile < kEnd) load(k0 + kTile, b ^ 1);
    else cpasync::commit();  // an empty group: one group per tile, so wait<1> below is this tile's
    cpasync::wait<1>();
    __syncthreads();
    const T* kS = buf0 + b * kBuf;
    const T* vS = kS + kTile * ld;
    if (idle) continue;
    // Within the tile (32-bit): key column c is real below kEndT; row r of tile mt sees it when
    // c - r <= ahead + 16mt (j <= i).
    const bool edge = (g.causal && k0 + kTile > q0) || k0 + kTile > g.tk || q0 + kQ > g.tq;
    const int kEndT = int(min(g.tk - k0, int64_t(kTile))), ahead = int(qw - k0);
#pragma unroll 1
    for (int s = 0; s < kTile / kStep; s++) {
      if (s * kStep >= kEndT) break;
      if (g.causal && s * kStep > ahead + kStep * MT - 1) break;  // these keys and later follow every query of the warp
      const T* kRows = kS + s * kStep * ld;
      const T* vRows = vS + s * kStep * ld;
      C16 sc[MT][2], dp[MT][2];
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int n = 0; n < 2; n++) sc[mt][n] = dp[mt][n] = C16{{0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
      for (int c = 0; c < kChunks; c++) {
        B16 bk[2], bv[2];
        fragB2RowsN(bk, kRows + c * 16, ld, lane);
        fragB2RowsN(bv, vRows + c * 16, ld, lane);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
          for (int n = 0; n < 2; n++) {
            mma::mma16816<T>(sc[mt][n], qA[mt][c], bk[n]);
            mma::mma16816<T>(dp[mt][n], gA[mt][c], bv[n]);
          }
      }
      A16 dsA[MT];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        float ds[2][4];
#pragma unroll
        for (int n = 0; n < 2; n++) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            const int h = e >> 1;
            const float pe = exp2f(sc[mt][n].c[e] * scale2 - lseR[mt][h]);
            float dse = pe * (dp[mt][n].c[e] - dvecR[mt][h]);
            if (edge) {
              const int r = rowOf(lane, e), c = s * kStep + n * 8 + colOf(lane, e);
              if (r >= qReal[mt] || c >= kEndT || (g.causal && c - r > ahead + kStep * mt)) dse = 0.0f;
            }
            ds[n][e] = dse;
          }
        }
        dsA[mt] = toA<T>(ds);
      }
#pragma unroll
      for (int c = 0; c < kChunks; c++) {
        B16 bk[2];
        fragB2RowsK(bk, kRows + c * 16, ld, lane);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          mma::mma16816<T>(dQ[mt][2 * c], dsA[mt], bk[0]);
          mma::mma16816<T>(dQ[mt][2 * c + 1], dsA[mt], bk[1]);
        }
      }
    }
  }
  cpasync::wait<0>();
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
    storeRows<D>(headOf(dq, dqs, bh, g.heads), dqs.t, qw + kStep * mt, g.tq, dQ[mt], float(g.scale), vec & kPairDQ,
                 lane);
}

// Two buffers each: a Q and a dO tile with their rows' lse and dvec (dK/dV), a K and a V tile (dQ).
template <int D>
constexpr size_t kvBytes() {
  return 2 * (size_t(2 * kTile * kLd<D>) * 2 + size_t(2 * kTile) * 4);
}
// Q and dO of a block's kWarps·16·MT queries overlap the second buffer (read into registers first).
template <int D, int MT>
constexpr size_t qBytes() {
  return size_t(2 * kTile + 2 * kWarps * kStep * MT) * kLd<D> * 2;
}

unsigned tiles(int64_t n, int rows = kTile) { return unsigned((n + rows - 1) / rows); }

bool pairOk(const void* p, const CudaAttnStrides& s) {
  return (reinterpret_cast<uintptr_t>(p) & 3) == 0 && s.b % 2 == 0 && s.h % 2 == 0 && s.t % 2 == 0;
}

#define MT_FA2_DIM(DIM, ...)                                  \
  if (DIM == 64) { constexpr int D = 64; __VA_ARGS__; }       \
  else { constexpr int D = 128; __VA_ARGS__; }

}  // namespace

bool cudaAttentionFa2BwdApplies(int dtype, const CudaAttnShape& g) {
  return (dtype == cu::BF16 || dtype == cu::F16) && (g.dim == 64 || g.dim == 128);
}

void cudaAttentionBackwardFa2(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                              const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs,
                              const void* dO, const CudaAttnStrides& gs, const void* lse, const void* dvec, void* dq,
                              const CudaAttnStrides& dqs, void* dk, const CudaAttnStrides& dks, void* dv,
                              const CudaAttnStrides& dvs) {
  const char* op = "scaledDotProductAttention backward (fa2)";
  if (!cudaAttentionFa2BwdApplies(dtype, g))
    cu::fail(std::string(op) + ": needs bf16 or f16 and head dim 64 or 128, got dtype code " + std::to_string(dtype) +
             " and head dim " + std::to_string(g.dim));
  if (g.tq > int64_t(65535) * kTile || g.tk > int64_t(65535) * kTile)
    cu::fail(std::string(op) + ": sequence longer than " + std::to_string(65535 * kTile));
  if (g.batch * g.heads > (int64_t(1) << 31) - 1) cu::fail(std::string(op) + ": more than 2^31 - 1 (batch, head) pairs");
  // The dQ kernel's query rows per warp (MESHTRAIN_FA2_BWD_ROWS: 16 unset, or 32 where D is 64).
  const int dqRows = attn16::rowsPerWarp("MESHTRAIN_FA2_BWD_ROWS");
  if (g.batch * g.heads == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const unsigned bh = unsigned(g.batch * g.heads);
  const int vec = (vecOk(q, qs) ? kVecQ : 0) | (vecOk(k, ks) ? kVecK : 0) | (vecOk(v, vs) ? kVecV : 0) |
                  (vecOk(dO, gs) ? kVecG : 0) | (pairOk(dq, dqs) ? kPairDQ : 0) | (pairOk(dk, dks) ? kPairDK : 0) |
                  (pairOk(dv, dvs) ? kPairDV : 0);
  MT_ATTN16_TYPES(dtype, MT_FA2_DIM(g.dim, {
    const T* qp = static_cast<const T*>(q);
    const T* kp = static_cast<const T*>(k);
    const T* vp = static_cast<const T*>(v);
    const T* gp = static_cast<const T*>(dO);
    const float* lp = static_cast<const float*>(lse);
    const float* dvp = static_cast<const float*>(dvec);
    // D 128 takes more than the 48 KiB of dynamic shared memory that needs no opt-in.
    static_assert(kvBytes<D>() <= 227 * 1024 && qBytes<D, D == 64 ? 2 : 1>() <= 227 * 1024,
                  "fa2 backward: shared memory");
    if (g.tk > 0) {
      auto kv = attnFa2BackwardKV<T, D>;
      if (kvBytes<D>() > 48 * 1024)
        cudaAllowDynamicSmem(dev, reinterpret_cast<const void*>(kv), kvBytes<D>(), "attnFa2BackwardKV");
      MT_LAUNCH(kv, (dim3(bh, tiles(g.tk))), kWarps * 32, kvBytes<D>(), s, qp, qs, kp, ks, vp, vs, gp, gs, lp, dvp,
                static_cast<T*>(dk), dks, static_cast<T*>(dv), dvs, vec, g);
      cu::checkLaunch("attnFa2BackwardKV");
    }
    if (g.tq > 0) {
      auto launchQ = [&](auto tiles16) {
        constexpr int MT = decltype(tiles16)::value;
        auto bq = attnFa2BackwardQ<T, D, MT>;
        const size_t bytes = qBytes<D, MT>();
        if (bytes > 48 * 1024) cudaAllowDynamicSmem(dev, reinterpret_cast<const void*>(bq), bytes, "attnFa2BackwardQ");
        // The census labels the variant (tests check which one ran), with the bytes the kernel moves.
        MT_CENSUS_DESCRIBE(std::to_string(16 * MT) + " rows/warp",
                           double(bh) * (2.0 * (3 * g.tq + 2 * g.tk) * g.dim + 8.0 * g.tq));
        MT_LAUNCH(bq, (dim3(bh, tiles(g.tq, kWarps * kStep * MT))), kWarps * 32, bytes, s, qp, qs, kp, ks, vp, vs, gp, gs,
                  lp, dvp, static_cast<T*>(dq), dqs, vec, g);
      };
      // 32 query rows per warp at D 64 only: at D 128 two tiles' Q and dO fragments (128 registers a
      // lane) and dQ accumulators (128) spill (ptxas sm_90: 340/420 B).
      if (dqRows == 32 && D == 64) launchQ(std::integral_constant<int, D == 64 ? 2 : 1>{});
      else launchQ(std::integral_constant<int, 1>{});
      cu::checkLaunch("attnFa2BackwardQ");
    }
  }));
}

}  // namespace mt
