// Register-resident tensor-core attention forward for bf16/f16 (head dims 32, 64, 128), in the
// style of flash-attention 2, on PTX mma.sync m16n8k16 (mma_sync.cuh). A block of 4 warps owns 64
// queries (16 per warp, held as A fragments), or with MESHTRAIN_FA2_ROWS=32 at head dims up to 64,
// 128 queries (32 per warp as two m16 tiles, flash-attention 2's layout: every K and V fragment a warp
// reads feeds both; one kernel body, templated on the tiles per warp). It streams 64-key tiles of
// K and V through shared memory with cp.async (V of a tile loads while S = Q Kᵀ runs, K of the
// next tile while O += P V runs), reading them as B fragments with ldmatrix (transposed for V).
// Scores, probabilities and the running output never leave registers: a row's max and sum are
// reduced over the 4 lanes of a quad, exponentials are exp2 with scale·log2(e) folded in, two
// adjacent n8 score tiles are one k16 probability tile (rounded to the input dtype, as
// flash-attention does), and the output is rescaled in registers and written once, through shared
// memory for 16-byte stores. Causal: key tiles past a block's last query are skipped, only the
// diagonal and partial tiles are masked, and a warp skips the score and value columns past its own
// last query. The heaviest (last) query tiles are scheduled first. Deterministic, no atomics. Same
// operands, strides and lse as cudaAttentionForwardTc (attention_tc.cu); the default family
// (attention.cu) takes it where it applies. The emulated device runs the mma and ldmatrix steps as
// warp collectives.
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include "cuda/attention.h"
#include "cuda/attention_common.cuh"
#include "cuda/attention_fa2.h"
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
constexpr int kKeys = 64;  // keys of a streamed K/V tile
constexpr unsigned kFull = 0xffffffffu;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Queries a block owns: 16 per m16 tile, MT tiles per warp.
template <int MT>
constexpr int kQueries = kWarps * 16 * MT;

// 16-bit shared row: a 16-byte multiple (ldmatrix, cp.async) whose 8 extra values start each row 4
// banks after the last, so the 8 rows an ldmatrix phase (or the staging store) touches hit 32 banks.
template <int D>
constexpr int kLd = D + 8;

// Which operands move 16 bytes at a time (16-byte aligned base, strides multiples of 8).
enum : int { kVecQ = 1, kVecK = 2, kVecV = 4, kVecO = 8 };

// A raw 16-bit pair into shared memory (memcpy on the emulated device: no type punning in C++).
__device__ __forceinline__ void st32(void* p, uint32_t v) {
#ifdef MESHTRAIN_CUDA_EMU
  std::memcpy(p, &v, 4);
#else
  *static_cast<uint32_t*>(p) = v;
#endif
}

// Rows [t0, t0 + R) of one head into dst[r * ld + d]; rows at or past `limit` as zeros (masked
// scores, and 0 · v stays finite). With `vec`, 16-byte asynchronous copies.
template <int D, int R, typename T>
__device__ __forceinline__ void loadTile(T* dst, const T* base, int64_t ts, int64_t t0, int64_t limit, bool vec) {
  constexpr int ld = kLd<D>;
  if (vec) {
    constexpr int perRow = D / 8;
    for (int i = threadIdx.x; i < R * perRow; i += kWarps * 32) {
      const int r = i / perRow, d = (i % perRow) * 8;
      const int64_t t = t0 + r;
      if (t < limit) cpasync::copy16(dst + r * ld + d, base + t * ts + d);
      else *reinterpret_cast<Chunk*>(dst + r * ld + d) = Chunk{{0u, 0u, 0u, 0u}};
    }
    return;
  }
  for (int i = threadIdx.x; i < R * D; i += kWarps * 32) {
    const int r = i / D, d = i % D;
    const int64_t t = t0 + r;
    if (t < limit) dst[r * ld + d] = base[t * ts + d];
    else cu::st(dst + r * ld + d, 0.0f);
  }
}

// The A fragment of rows [0, 16) x dims [16kk, 16kk + 16) of a row-major tile (ldmatrix: matrices
// rows +0/+8 x dims +0/+8 in A's register order; lane l addresses matrix l / 8's row l % 8).
template <int D, typename T>
__device__ __forceinline__ A16 aFrag(const T* rows, int kk, int lane) {
  const int mi = lane / 8, mr = lane % 8;
  A16 a;
  mma::ldsm4(a.r, rows + (8 * (mi & 1) + mr) * kLd<D> + 16 * kk + 8 * (mi >> 1));
  return a;
}

// grid (batch * heads, query tiles of kQueries<MT>), the last tile first. Warp w owns rows
// q0 + 16·MT·w .. + 16·MT, as MT m16 tiles; lane l holds rows +16mt + (l >> 2) and + 8 of tile mt
// (mma_sync.cuh's C layout). With MT = 2 every K and V fragment a warp reads feeds two products.
template <typename T, int D, int MT>
__global__ void __launch_bounds__(kWarps * 32)
    attnForwardFa2(const T* q, CudaAttnStrides qs, const T* k, CudaAttnStrides ks, const T* v, CudaAttnStrides vs, T* o,
                   CudaAttnStrides os, float* lse, int vec, CudaAttnShape g) {
  constexpr int ld = kLd<D>, kSteps = D / 16, nTiles = D / 8, sTiles = kKeys / 8, kQ = kQueries<MT>;
  static_assert(MT == 1 || D <= 64, "two m16 tiles per warp at D 128 spill (ptxas, sm_90)");
  MT_DYNAMIC_SHARED(unsigned char, smem);
  T* qS = reinterpret_cast<T*>(smem);
  T* kS = qS + kQ * ld;
  T* vS = kS + kKeys * ld;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gr = lane >> 2, tq = lane & 3;
  const int mi = lane / 8, mr = lane % 8;  // the 8x8 matrix and row this lane addresses in ldmatrix
  const int64_t bh = blockIdx.x;
  const int64_t q0 = int64_t(gridDim.y - 1 - blockIdx.y) * kQ;  // causal: the most keys first
  const int64_t w0 = q0 + warp * 16 * MT;
  const T* kh = headOf(k, ks, bh, g.heads);
  const T* vh = headOf(v, vs, bh, g.heads);
  const int64_t kEnd = g.causal ? min(g.tk, q0 + kQ) : g.tk;
  loadTile<D, kQ>(qS, headOf(q, qs, bh, g.heads), qs.t, q0, g.tq, vec & kVecQ);
  if (kEnd > 0) loadTile<D, kKeys>(kS, kh, ks.t, 0, g.tk, vec & kVecK);
  cpasync::commit();

  T* qW = qS + warp * 16 * MT * ld;  // this warp's rows: its Q fragments, at the end its output staging
  A16 qa[MT][kSteps];
  C16 acc[MT][nTiles];
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int n = 0; n < nTiles; n++) acc[mt][n] = C16{{0.0f, 0.0f, 0.0f, 0.0f}};
  const float ninf = -CUDART_INF_F, sl2 = float(g.scale) * kLog2e;
  float m[MT][2], l[MT][2];  // running row maxima (log2 units); this lane's share of the row sums
#pragma unroll
  for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = ninf, l[mt][0] = l[mt][1] = 0.0f;

  for (int64_t k0 = 0; k0 < kEnd; k0 += kKeys) {
    if (k0 > 0) __syncthreads();  // every warp is done with the previous V tile
    loadTile<D, kKeys>(vS, vh, vs.t, k0, g.tk, vec & kVecV);
    cpasync::commit();
    cpasync::wait<1>();  // Q (first tile) and this K tile; V may still be in flight
    __syncthreads();
    if (k0 == 0) {
#pragma unroll
      for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int kk = 0; kk < kSteps; kk++) qa[mt][kk] = aFrag<D>(qW + 16 * mt * ld, kk, lane);
    }
    // Key columns [k0, k0 + 8 * jEnd) can be visible to this warp (jEnd >= 1: k0 < tk, and causal k0 <= q0).
    const int64_t seen = min(g.tk, g.causal ? w0 + 16 * MT : g.tk) - k0;
    const int jEnd = int(min(int64_t(sTiles), (seen + 7) / 8));
    C16 s[MT][sTiles];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int j = 0; j < sTiles; j++) s[mt][j] = C16{{0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
    for (int kk = 0; kk < kSteps; kk += 2) {
#pragma unroll
      for (int j = 0; j < sTiles; j++) {
        if (j < jEnd) {  // warp-uniform, as ldmatrix needs
          // Keys 8j.. x dims 16kk.. in four 8x8 matrices (dims +0, +8, +16, +24): B of steps kk, kk + 1.
          uint32_t r[4];
          mma::ldsm4(r, kS + (8 * j + mr) * ld + 16 * kk + 8 * mi);
#pragma unroll
          for (int mt = 0; mt < MT; mt++) {
            mma::mma16816<T>(s[mt][j], qa[mt][kk], B16{{r[0], r[1]}});
            mma::mma16816<T>(s[mt][j], qa[mt][kk + 1], B16{{r[2], r[3]}});
          }
        }
      }
    }
    // Scale to log2 units; mask only where a key can be past tk or after a row (also every j >= jEnd).
    // A row sees the tile's columns below its limit: tk, and causal its own position + 1 (32-bit,
    // relative to k0, so the mask is one compare per score).
    const bool edge = k0 + kKeys > g.tk || (g.causal && k0 + kKeys - 1 > w0);
    const int64_t tkRel = min(g.tk - k0, int64_t(kKeys));
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
      const int64_t row0 = w0 + 16 * mt + gr - k0;  // rows relative to k0
      int lim[2];
#pragma unroll
      for (int h = 0; h < 2; h++)
        lim[h] = int(g.causal ? max(int64_t(0), min(tkRel, row0 + 8 * h + 1)) : tkRel);
      float t0 = ninf, t1 = ninf;
#pragma unroll
      for (int j = 0; j < sTiles; j++) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
          float x = s[mt][j].c[i] * sl2;
          if (edge && 8 * j + 2 * tq + (i & 1) >= lim[i >> 1]) x = ninf;
          s[mt][j].c[i] = x;
          if (i < 2) t0 = maxNan(t0, x);
          else t1 = maxNan(t1, x);
        }
      }
      t0 = maxNan(t0, __shfl_xor_sync(kFull, t0, 1));
      t0 = maxNan(t0, __shfl_xor_sync(kFull, t0, 2));
      t1 = maxNan(t1, __shfl_xor_sync(kFull, t1, 1));
      t1 = maxNan(t1, __shfl_xor_sync(kFull, t1, 2));
      const float n0 = maxNan(m[mt][0], t0), n1 = maxNan(m[mt][1], t1);
      // Nothing visible yet in a row: subtract 0 so -inf - -inf never makes a NaN (its p are all 0).
      const float b0 = n0 == ninf ? 0.0f : n0, b1 = n1 == ninf ? 0.0f : n1;
      const float a0 = exp2f(m[mt][0] - b0), a1 = exp2f(m[mt][1] - b1);
      m[mt][0] = n0;
      m[mt][1] = n1;
      float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
      for (int j = 0; j < sTiles; j++) {
        s[mt][j].c[0] = exp2f(s[mt][j].c[0] - b0);
        s[mt][j].c[1] = exp2f(s[mt][j].c[1] - b0);
        s[mt][j].c[2] = exp2f(s[mt][j].c[2] - b1);
        s[mt][j].c[3] = exp2f(s[mt][j].c[3] - b1);
        sum0 += s[mt][j].c[0] + s[mt][j].c[1];
        sum1 += s[mt][j].c[2] + s[mt][j].c[3];
      }
      l[mt][0] = l[mt][0] * a0 + sum0;
      l[mt][1] = l[mt][1] * a1 + sum1;
#pragma unroll
      for (int n = 0; n < nTiles; n++) {
        acc[mt][n].c[0] *= a0;
        acc[mt][n].c[1] *= a0;
        acc[mt][n].c[2] *= a1;
        acc[mt][n].c[3] *= a1;
      }
    }
    __syncthreads();  // every warp is done with this K tile
    if (k0 + kKeys < kEnd) loadTile<D, kKeys>(kS, kh, ks.t, k0 + kKeys, g.tk, vec & kVecK);
    cpasync::commit();   // possibly empty: the group count stays the same every tile
    cpasync::wait<1>();  // this V tile; the next K may stay in flight
    __syncthreads();
    // O += P V: score tiles 2kk and 2kk + 1 are the k16 A fragment of keys k0 + 16kk..; V's B
    // fragments pair two keys (rows) of one dim, which ldmatrix's transposing form delivers.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; kk++) {
      if (2 * kk >= jEnd) continue;
      A16 pa[MT];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        const C16 &lo = s[mt][2 * kk], &hi = s[mt][2 * kk + 1];
        pa[mt] = A16{{mma::pack2<T>(lo.c[0], lo.c[1]), mma::pack2<T>(lo.c[2], lo.c[3]), mma::pack2<T>(hi.c[0], hi.c[1]),
                      mma::pack2<T>(hi.c[2], hi.c[3])}};
      }
#pragma unroll
      for (int n = 0; n < nTiles; n += 2) {
        // Keys 16kk.. x dims 8n.. transposed in four 8x8 matrices (keys +0/+8, dims +0/+8): B of n, n + 1.
        uint32_t r[4];
        mma::ldsm4t(r, vS + (16 * kk + 8 * (mi & 1) + mr) * ld + 8 * n + 8 * (mi >> 1));
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          mma::mma16816<T>(acc[mt][n], pa[mt], B16{{r[0], r[1]}});
          mma::mma16816<T>(acc[mt][n + 1], pa[mt], B16{{r[2], r[3]}});
        }
      }
    }
  }
  cpasync::wait<0>();
  __syncthreads();  // no copy (Q when there were no keys) still lands in qS below

  // Stage the warp's output rows in its own Q rows (only it read them), then store whole rows.
  T* oh = headOf(o, os, bh, g.heads);
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
    float l0 = l[mt][0], l1 = l[mt][1];
    l0 += __shfl_xor_sync(kFull, l0, 1);
    l0 += __shfl_xor_sync(kFull, l0, 2);
    l1 += __shfl_xor_sync(kFull, l1, 1);
    l1 += __shfl_xor_sync(kFull, l1, 2);
    const float i0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, i1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;  // no keys (tk = 0): zeros
    T* st = qW + (16 * mt + gr) * ld + 2 * tq;
#pragma unroll
    for (int n = 0; n < nTiles; n++) {
      st32(st + 8 * n, mma::pack2<T>(acc[mt][n].c[0] * i0, acc[mt][n].c[1] * i0));
      st32(st + 8 * ld + 8 * n, mma::pack2<T>(acc[mt][n].c[2] * i1, acc[mt][n].c[3] * i1));
    }
    const int64_t row0 = w0 + 16 * mt + gr, row1 = row0 + 8;
    if (tq == 0) {
      if (row0 < g.tq) lse[bh * g.tq + row0] = (m[mt][0] + log2f(l0)) * kLn2;
      if (row1 < g.tq) lse[bh * g.tq + row1] = (m[mt][1] + log2f(l1)) * kLn2;
    }
  }
  __syncwarp();
  constexpr int wRows = 16 * MT;
  if (vec & kVecO) {
    constexpr int perRow = D / 8;
    for (int i = lane; i < wRows * perRow; i += 32) {
      const int r = i / perRow, d = (i % perRow) * 8;
      if (w0 + r < g.tq)
        *reinterpret_cast<Chunk*>(oh + (w0 + r) * os.t + d) = *reinterpret_cast<const Chunk*>(qW + r * ld + d);
    }
  } else {
    for (int i = lane; i < wRows * D; i += 32) {
      const int r = i / D, d = i % D;
      if (w0 + r < g.tq) oh[(w0 + r) * os.t + d] = qW[r * ld + d];
    }
  }
}

template <int D, int MT>
constexpr size_t forwardBytes() {
  return size_t((kQueries<MT> + 2 * kKeys) * kLd<D>) * 2;
}

// Head dims the 32-row variant is built for: at D 128 two m16 tiles' accumulators (128 registers a
// lane) and scores (64) spill even with Q re-read from shared memory per key tile (ptxas sm_90: 52/56 B).
bool fa2Rows32Applies(int dim) { return dim <= 64; }

// Rows per warp of the forward: MESHTRAIN_FA2_ROWS's 32 where it applies, 16 elsewhere.
int fa2RowsPerWarp(const CudaAttnShape& g) {
  return attn16::rowsPerWarp("MESHTRAIN_FA2_ROWS") == 32 && fa2Rows32Applies(g.dim) ? 32 : 16;
}

}  // namespace

bool cudaAttentionFa2Applies(int dtype, const CudaAttnShape& g) {
  return (dtype == cu::BF16 || dtype == cu::F16) && (g.dim == 32 || g.dim == 64 || g.dim == 128);
}

void cudaAttentionForwardFa2(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                             const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs, void* o,
                             const CudaAttnStrides& os, void* lse) {
  if (!cudaAttentionFa2Applies(dtype, g))
    cu::fail("scaledDotProductAttention (fa2): needs bf16 or f16 and head dim 32, 64 or 128, got dtype code " +
             std::to_string(dtype) + ", head dim " + std::to_string(g.dim));
  const int rows = fa2RowsPerWarp(g), mt = rows / 16, perBlock = kWarps * rows;
  if (g.tq > int64_t(65535) * perBlock)
    cu::fail("scaledDotProductAttention (fa2): Tq " + std::to_string(g.tq) + " is longer than " +
             std::to_string(65535 * perBlock) + " (" + std::to_string(rows) + " rows per warp)");
  if (g.batch * g.heads == 0 || g.tq == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const dim3 grid(unsigned(g.batch * g.heads), unsigned((g.tq + perBlock - 1) / perBlock));
  const int vec = (vecOk(q, qs) ? kVecQ : 0) | (vecOk(k, ks) ? kVecK : 0) | (vecOk(v, vs) ? kVecV : 0) |
                  (vecOk(o, os) ? kVecO : 0);
  auto launch = [&](auto tag, auto dim, auto tiles) {
    using T = decltype(tag);
    constexpr int D = decltype(dim)::value, MT = decltype(tiles)::value;
    auto kern = attnForwardFa2<T, D, MT>;
    const size_t bytes = forwardBytes<D, MT>();
    cudaAllowDynamicSmem(dev, reinterpret_cast<const void*>(kern), bytes, "attnForwardFa2");  // once per device
    // The census labels the variant (tests check which one ran), with the bytes the kernel moves.
    MT_CENSUS_DESCRIBE(std::to_string(rows) + " rows/warp",
                       double(g.batch * g.heads) * (2.0 * (2 * g.tq + 2 * g.tk) * g.dim + 4.0 * g.tq));
    MT_LAUNCH(kern, grid, kWarps * 32, bytes, s, static_cast<const T*>(q), qs, static_cast<const T*>(k), ks,
              static_cast<const T*>(v), vs, static_cast<T*>(o), os, static_cast<float*>(lse), vec, g);
  };
  auto byRows = [&](auto tag, auto dim) {
    if constexpr (decltype(dim)::value <= 64) {
      if (mt == 2) return launch(tag, dim, std::integral_constant<int, 2>{});
    }
    launch(tag, dim, std::integral_constant<int, 1>{});
  };
  auto byDim = [&](auto tag) {
    if (g.dim == 32) byRows(tag, std::integral_constant<int, 32>{});
    else if (g.dim == 64) byRows(tag, std::integral_constant<int, 64>{});
    else byRows(tag, std::integral_constant<int, 128>{});
  };
  if (dtype == cu::BF16) byDim(cu::bf16{});
  else byDim(cu::f16{});
  cu::checkLaunch("attnForwardFa2");
}

}  // namespace mt
