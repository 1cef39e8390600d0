// Tensor-core attention for bf16/f16 (head dims 32, 64, 128): the algorithm of attention.cu with
// its two products per tile on WMMA 16x16x16 fragments (f32 accumulation). Blocks of 4 warps own
// 64 rows (16 per warp) and stream 64-row tiles through shared memory. Scores go through shared
// memory for the softmax step (a lane pair per row), probabilities are rounded to the input
// dtype for the next product (as flash-attention does), the running output lives in shared
// memory (it is rescaled row by row). dK/dV and dQ stay in fragments. Deterministic: no atomics.
// The emulated device runs the same code through emu/include/mma.h.
#include <mma.h>
#include <cstdint>
#include "cuda/attention.h"
#include "cuda/attention_common.cuh"
#include "cuda/attention_tc.h"
#include "cuda/common.cuh"
#include "cuda/func_smem.h"
#include "cuda/runtime.h"

namespace mt {
namespace {

using attn16::Chunk;
using attn16::headOf;
using attn16::maxNan;
using attn16::vecOk;

namespace wm = nvcuda::wmma;

constexpr int kWarps = 4;
constexpr int kRows = 64;             // rows a block owns, and rows of a streamed tile
constexpr int kSld = kRows + 4;       // float score row (multiple of 4, as WMMA needs)
constexpr int kPld = kRows + 8;       // 16-bit probability row (multiple of 8)
constexpr unsigned kFull = 0xffffffffu;

template <int D>
constexpr int kLd = D + 8;  // 16-bit tile row: a multiple of 8 (WMMA), staggers the banks

template <typename T>
using FragA = wm::fragment<wm::matrix_a, 16, 16, 16, T, wm::row_major>;
template <typename T>
using FragB = wm::fragment<wm::matrix_b, 16, 16, 16, T, wm::row_major>;
template <typename T>
using FragBt = wm::fragment<wm::matrix_b, 16, 16, 16, T, wm::col_major>;  // Bᵀ of row-major rows
using FragC = wm::fragment<wm::accumulator, 16, 16, 16, float>;

__device__ __forceinline__ bool visible(int64_t i, int64_t j, int64_t tk, bool causal) {
  return j < tk && (!causal || j <= i);
}

// Which operands may be read 16 bytes at a time (16-byte aligned base, strides multiples of 8).
enum : int { kVecQ = 1, kVecK = 2, kVecV = 4, kVecG = 8 };

// Rows [t0, t0 + kRows) of one head into dst[r * ld + d]; rows at or past `limit` as 0. With
// `vec`, 8 values per access (dst rows stay 16-byte aligned: ld and d are multiples of 8).
template <int D, typename T>
__device__ __forceinline__ void loadTile(T* dst, const T* base, int64_t ts, int64_t t0, int64_t limit, bool vec) {
  constexpr int ld = kLd<D>;
  if (vec) {
    constexpr int perRow = D / 8;
    for (int i = threadIdx.x; i < kRows * perRow; i += kWarps * 32) {
      const int r = i / perRow, d = (i % perRow) * 8;
      const int64_t t = t0 + r;
      Chunk c{{0u, 0u, 0u, 0u}};
      if (t < limit) c = *reinterpret_cast<const Chunk*>(base + t * ts + d);
      *reinterpret_cast<Chunk*>(dst + r * ld + d) = c;
    }
    return;
  }
  for (int i = threadIdx.x; i < kRows * D; i += kWarps * 32) {
    const int r = i / D, d = i % D;
    const int64_t t = t0 + r;
    if (t < limit) dst[r * ld + d] = base[t * ts + d];
    else cu::st(dst + r * ld + d, 0.0f);
  }
}

// out[16 x 64] (float, row stride kSld) = A[16 x D] · B[64 x D]ᵀ, A and B row-major with stride ld.
template <int D, typename T>
__device__ __forceinline__ void productNT(float* out, const T* a, const T* b) {
  constexpr int ld = kLd<D>;
#pragma unroll
  for (int j = 0; j < kRows / 16; j++) {
    FragC acc;
    wm::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
      FragA<T> fa;
      FragBt<T> fb;
      wm::load_matrix_sync(fa, a + kk * 16, ld);
      wm::load_matrix_sync(fb, b + j * 16 * ld + kk * 16, ld);
      wm::mma_sync(acc, fa, fb, acc);
    }
    wm::store_matrix_sync(out + j * 16, acc, kSld, wm::mem_row_major);
  }
}

// acc[n] += P[16 x 64] (row stride kPld) · B[64 x D] (row-major, stride ld), n over D / 16 columns.
template <int D, typename T>
__device__ __forceinline__ void productAcc(FragC* acc, const T* p, const T* b) {
  constexpr int ld = kLd<D>;
#pragma unroll
  for (int kk = 0; kk < kRows / 16; kk++) {
    FragA<T> fa;
    wm::load_matrix_sync(fa, p + kk * 16, kPld);
#pragma unroll
    for (int n = 0; n < D / 16; n++) {
      FragB<T> fb;
      wm::load_matrix_sync(fb, b + kk * 16 * ld + n * 16, ld);
      wm::mma_sync(acc[n], fa, fb, acc[n]);
    }
  }
}

// Writes 16 rows of fragments (times `scale`) to rows row0.. of a head, through the warp's float
// staging tile (16 x kSld); rows at or past `limit` are skipped.
template <int D, typename T>
__device__ __forceinline__ void storeRows(T* head, int64_t ts, int64_t row0, int64_t limit, FragC* acc, float scale,
                                          float* stage) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int n = 0; n < D / 16; n++) {
    wm::store_matrix_sync(stage, acc[n], kSld, wm::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 256; e += 32) {
      const int r = e / 16, c = e % 16;
      if (row0 + r < limit) cu::st(head + (row0 + r) * ts + n * 16 + c, stage[r * kSld + c] * scale);
    }
    __syncwarp();
  }
}

template <int D>
constexpr size_t forwardBytes() {
  return size_t(3 * kRows * kLd<D>) * 2 + size_t(kWarps * 16 * kSld) * 4 + size_t(kWarps * 16 * (D + 4)) * 4 +
         size_t(kWarps * 16 * kPld) * 2;
}
template <int D>
constexpr size_t backwardKVBytes() {
  return size_t(4 * kRows * kLd<D>) * 2 + size_t(2 * kRows) * 4 + size_t(2 * kWarps * 16 * kSld) * 4 +
         size_t(2 * kWarps * 16 * kPld) * 2;
}
template <int D>
constexpr size_t backwardQBytes() {
  return size_t(4 * kRows * kLd<D>) * 2 + size_t(2 * kWarps * 16 * kSld) * 4 + size_t(kWarps * 16 * kPld) * 2;
}

// grid (batch * heads, query tiles of 64). Warp w owns queries q0 + 16w .. + 15; per key tile the
// lane pair (2r, 2r + 1) runs the online softmax of row r over 32 columns each.
template <typename T, int D>
__global__ void __launch_bounds__(kWarps * 32)
    attnForwardTc(const T* q, CudaAttnStrides qs, const T* k, CudaAttnStrides ks, const T* v, CudaAttnStrides vs, T* o,
                  CudaAttnStrides os, float* lse, int vec, CudaAttnShape g) {
  constexpr int ld = kLd<D>, old = D + 4;
  MT_DYNAMIC_SHARED(unsigned char, smem);
  T* qS = reinterpret_cast<T*>(smem);
  T* kS = qS + kRows * ld;
  T* vS = kS + kRows * ld;
  float* sAll = reinterpret_cast<float*>(vS + kRows * ld);
  float* oAll = sAll + kWarps * 16 * kSld;
  T* pAll = reinterpret_cast<T*>(oAll + kWarps * 16 * old);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sW = sAll + warp * 16 * kSld;
  float* oW = oAll + warp * 16 * old;
  T* pW = pAll + warp * 16 * kPld;
  const int64_t bh = blockIdx.x, q0 = int64_t(blockIdx.y) * kRows;
  loadTile<D>(qS, headOf(q, qs, bh, g.heads), qs.t, q0, g.tq, vec & kVecQ);
  for (int e = lane; e < 16 * old; e += 32) oW[e] = 0.0f;
  const int rr = lane / 2, half = lane % 2;
  const int64_t i = q0 + warp * 16 + rr;
  const float scale = float(g.scale), ninf = -CUDART_INF_F;
  float m = ninf, l = 0.0f;
  const T* kh = headOf(k, ks, bh, g.heads);
  const T* vh = headOf(v, vs, bh, g.heads);
  const int64_t kEnd = g.causal ? min(g.tk, q0 + kRows) : g.tk;
  for (int64_t k0 = 0; k0 < kEnd; k0 += kRows) {
    __syncthreads();  // the previous tile's readers are done
    loadTile<D>(kS, kh, ks.t, k0, g.tk, vec & kVecK);
    loadTile<D>(vS, vh, vs.t, k0, g.tk, vec & kVecV);
    __syncthreads();
    productNT<D>(sW, qS + warp * 16 * ld, kS);
    __syncwarp();
    float mt = ninf;
    for (int c = half * 32; c < half * 32 + 32; c++) {
      const bool ok = visible(i, k0 + c, g.tk, g.causal);
      mt = maxNan(mt, ok ? sW[rr * kSld + c] * scale : ninf);
    }
    mt = maxNan(mt, __shfl_xor_sync(kFull, mt, 1));
    const float mNew = maxNan(m, mt);
    const bool none = mNew == ninf;  // nothing visible yet: everything stays 0
    const float alpha = m == ninf ? 0.0f : expf(m - mNew);
    float sum = 0.0f;
    for (int c = half * 32; c < half * 32 + 32; c++) {
      const bool ok = visible(i, k0 + c, g.tk, g.causal) && !none;
      const float p = ok ? expf(sW[rr * kSld + c] * scale - mNew) : 0.0f;
      cu::st(pW + rr * kPld + c, p);
      sum += p;
    }
    sum += __shfl_xor_sync(kFull, sum, 1);
    l = l * alpha + sum;
    m = mNew;
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++) oW[rr * old + d] *= alpha;
    __syncwarp();
    FragC acc[D / 16];
#pragma unroll
    for (int n = 0; n < D / 16; n++) wm::load_matrix_sync(acc[n], oW + n * 16, old, wm::mem_row_major);
    productAcc<D>(acc, pW, vS);
#pragma unroll
    for (int n = 0; n < D / 16; n++) wm::store_matrix_sync(oW + n * 16, acc[n], old, wm::mem_row_major);
    __syncwarp();
  }
  if (i < g.tq) {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // no keys at all (tk = 0): zeros
    T* orow = headOf(o, os, bh, g.heads) + i * os.t;
    for (int d = half * (D / 2); d < (half + 1) * (D / 2); d++) cu::st(orow + d, oW[rr * old + d] * inv);
    if (half == 0) lse[bh * g.tq + i] = m + logf(l);
  }
}

// dK, dV of the 64 keys k0.. : grid (batch * heads, key tiles of 64). Warp w owns keys k0 + 16w..;
// per query tile it forms Sᵀ = K_w Qᵀ and dPᵀ = V_w dOᵀ, then Pᵀ and dSᵀ (a lane pair per key),
// then dV_w += Pᵀ dO and dK_w += dSᵀ Q in fragments.
template <typename T, int D>
__global__ void __launch_bounds__(kWarps * 32)
    attnBackwardKVTc(const T* q, CudaAttnStrides qs, const T* k, CudaAttnStrides ks, const T* v, CudaAttnStrides vs,
                     const T* dO, CudaAttnStrides gs, const float* lse, const float* dvec, T* dk, CudaAttnStrides dks,
                     T* dv, CudaAttnStrides dvs, int vec, CudaAttnShape g) {
  constexpr int ld = kLd<D>;
  MT_DYNAMIC_SHARED(unsigned char, smem);
  T* kS = reinterpret_cast<T*>(smem);
  T* vS = kS + kRows * ld;
  T* qS = vS + kRows * ld;
  T* gS = qS + kRows * ld;
  float* lseS = reinterpret_cast<float*>(gS + kRows * ld);
  float* dvecS = lseS + kRows;
  float* sAll = dvecS + kRows;
  float* dpAll = sAll + kWarps * 16 * kSld;
  T* pAll = reinterpret_cast<T*>(dpAll + kWarps * 16 * kSld);
  T* dsAll = pAll + kWarps * 16 * kPld;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sW = sAll + warp * 16 * kSld;
  float* dpW = dpAll + warp * 16 * kSld;
  T* pW = pAll + warp * 16 * kPld;
  T* dsW = dsAll + warp * 16 * kPld;
  const int64_t bh = blockIdx.x, k0 = int64_t(blockIdx.y) * kRows;
  loadTile<D>(kS, headOf(k, ks, bh, g.heads), ks.t, k0, g.tk, vec & kVecK);
  loadTile<D>(vS, headOf(v, vs, bh, g.heads), vs.t, k0, g.tk, vec & kVecV);
  const T* qh = headOf(q, qs, bh, g.heads);
  const T* gh = headOf(dO, gs, bh, g.heads);
  FragC dK[D / 16], dV[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; n++) {
    wm::fill_fragment(dK[n], 0.0f);
    wm::fill_fragment(dV[n], 0.0f);
  }
  const int rr = lane / 2, half = lane % 2;
  const int64_t j = k0 + warp * 16 + rr;
  const float scale = float(g.scale);
  // Causal: queries before k0 see none of these keys (k0 is a multiple of the tile).
  for (int64_t i0 = g.causal ? k0 : 0; i0 < g.tq; i0 += kRows) {
    __syncthreads();
    loadTile<D>(qS, qh, qs.t, i0, g.tq, vec & kVecQ);
    loadTile<D>(gS, gh, gs.t, i0, g.tq, vec & kVecG);
    if (threadIdx.x < kRows) {
      const int64_t i = i0 + threadIdx.x;
      lseS[threadIdx.x] = i < g.tq ? lse[bh * g.tq + i] : 0.0f;
      dvecS[threadIdx.x] = i < g.tq ? dvec[bh * g.tq + i] : 0.0f;
    }
    __syncthreads();
    productNT<D>(sW, kS + warp * 16 * ld, qS);
    productNT<D>(dpW, vS + warp * 16 * ld, gS);
    __syncwarp();
    for (int c = half * 32; c < half * 32 + 32; c++) {
      const int64_t i = i0 + c;
      const bool ok = i < g.tq && visible(i, j, g.tk, g.causal);
      const float p = ok ? expf(sW[rr * kSld + c] * scale - lseS[c]) : 0.0f;
      cu::st(pW + rr * kPld + c, p);
      cu::st(dsW + rr * kPld + c, ok ? p * (dpW[rr * kSld + c] - dvecS[c]) : 0.0f);
    }
    __syncwarp();
    productAcc<D>(dV, pW, gS);
    productAcc<D>(dK, dsW, qS);
  }
  storeRows<D>(headOf(dk, dks, bh, g.heads), dks.t, k0 + warp * 16, g.tk, dK, scale, sW);
  storeRows<D>(headOf(dv, dvs, bh, g.heads), dvs.t, k0 + warp * 16, g.tk, dV, 1.0f, sW);
}

// dQ of the 64 queries q0.. : grid (batch * heads, query tiles of 64); per key tile S = Q_w Kᵀ,
// dP = dO_w Vᵀ, dS (a lane pair per query), then dQ_w += dS K in fragments.
template <typename T, int D>
__global__ void __launch_bounds__(kWarps * 32)
    attnBackwardQTc(const T* q, CudaAttnStrides qs, const T* k, CudaAttnStrides ks, const T* v, CudaAttnStrides vs,
                    const T* dO, CudaAttnStrides gs, const float* lse, const float* dvec, T* dq, CudaAttnStrides dqs,
                    int vec, CudaAttnShape g) {
  constexpr int ld = kLd<D>;
  MT_DYNAMIC_SHARED(unsigned char, smem);
  T* qS = reinterpret_cast<T*>(smem);
  T* gS = qS + kRows * ld;
  T* kS = gS + kRows * ld;
  T* vS = kS + kRows * ld;
  float* sAll = reinterpret_cast<float*>(vS + kRows * ld);
  float* dpAll = sAll + kWarps * 16 * kSld;
  T* dsAll = reinterpret_cast<T*>(dpAll + kWarps * 16 * kSld);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sW = sAll + warp * 16 * kSld;
  float* dpW = dpAll + warp * 16 * kSld;
  T* dsW = dsAll + warp * 16 * kPld;
  const int64_t bh = blockIdx.x, q0 = int64_t(blockIdx.y) * kRows;
  loadTile<D>(qS, headOf(q, qs, bh, g.heads), qs.t, q0, g.tq, vec & kVecQ);
  loadTile<D>(gS, headOf(dO, gs, bh, g.heads), gs.t, q0, g.tq, vec & kVecG);
  const T* kh = headOf(k, ks, bh, g.heads);
  const T* vh = headOf(v, vs, bh, g.heads);
  const int rr = lane / 2, half = lane % 2;
  const int64_t i = q0 + warp * 16 + rr;
  const float lseR = i < g.tq ? lse[bh * g.tq + i] : 0.0f;
  const float dvecR = i < g.tq ? dvec[bh * g.tq + i] : 0.0f;
  const float scale = float(g.scale);
  FragC dQ[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; n++) wm::fill_fragment(dQ[n], 0.0f);
  const int64_t kEnd = g.causal ? min(g.tk, q0 + kRows) : g.tk;
  for (int64_t k0 = 0; k0 < kEnd; k0 += kRows) {
    __syncthreads();
    loadTile<D>(kS, kh, ks.t, k0, g.tk, vec & kVecK);
    loadTile<D>(vS, vh, vs.t, k0, g.tk, vec & kVecV);
    __syncthreads();
    productNT<D>(sW, qS + warp * 16 * ld, kS);
    productNT<D>(dpW, gS + warp * 16 * ld, vS);
    __syncwarp();
    for (int c = half * 32; c < half * 32 + 32; c++) {
      const bool ok = i < g.tq && visible(i, k0 + c, g.tk, g.causal);
      const float p = ok ? expf(sW[rr * kSld + c] * scale - lseR) : 0.0f;
      cu::st(dsW + rr * kPld + c, ok ? p * (dpW[rr * kSld + c] - dvecR) : 0.0f);
    }
    __syncwarp();
    productAcc<D>(dQ, dsW, kS);
  }
  storeRows<D>(headOf(dq, dqs, bh, g.heads), dqs.t, q0 + warp * 16, g.tq, dQ, scale, sW);
}

// Once per device and kernel (func_smem.h), not before every launch.
template <typename K>
void allowSmem(int dev, K kernel, size_t bytes, const char* name) {
  cudaAllowDynamicSmem(dev, reinterpret_cast<const void*>(kernel), bytes, name);
}

unsigned tiles(int64_t n) { return unsigned((n + kRows - 1) / kRows); }

#define MT_TC_DIM(DIM, ...)                                   \
  switch (DIM) {                                              \
    case 32: { constexpr int D = 32; __VA_ARGS__; break; }    \
    case 64: { constexpr int D = 64; __VA_ARGS__; break; }    \
    default: { constexpr int D = 128; __VA_ARGS__; break; }   \
  }

}  // namespace

bool cudaAttentionTcApplies(int dtype, const CudaAttnShape& g) {
  return (dtype == cu::BF16 || dtype == cu::F16) && (g.dim == 32 || g.dim == 64 || g.dim == 128);
}

void cudaAttentionForwardTc(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                            const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs, void* o,
                            const CudaAttnStrides& os, void* lse) {
  if (g.tq > int64_t(65535) * kRows || g.tk > int64_t(65535) * kRows)
    cu::fail("scaledDotProductAttention: sequence longer than " + std::to_string(65535 * kRows));
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const dim3 grid(unsigned(g.batch * g.heads), tiles(g.tq));
  const int vec = (vecOk(q, qs) ? kVecQ : 0) | (vecOk(k, ks) ? kVecK : 0) | (vecOk(v, vs) ? kVecV : 0);
  MT_ATTN16_TYPES(dtype, MT_TC_DIM(g.dim, {
    auto kern = attnForwardTc<T, D>;
    const size_t bytes = forwardBytes<D>();
    allowSmem(dev, kern, bytes, "attnForwardTc");
    MT_LAUNCH(kern, grid, kWarps * 32, bytes, s, static_cast<const T*>(q), qs, static_cast<const T*>(k), ks,
              static_cast<const T*>(v), vs, static_cast<T*>(o), os, static_cast<float*>(lse), vec, g);
  }));
  cu::checkLaunch("attnForwardTc");
}

void cudaAttentionBackwardTc(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                             const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs,
                             const void* dO, const CudaAttnStrides& gs, const void* lse, const void* dvec, void* dq,
                             const CudaAttnStrides& dqs, void* dk, const CudaAttnStrides& dks, void* dv,
                             const CudaAttnStrides& dvs) {
  if (g.tq > int64_t(65535) * kRows || g.tk > int64_t(65535) * kRows)
    cu::fail("scaledDotProductAttention backward: sequence longer than " + std::to_string(65535 * kRows));
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const unsigned bh = unsigned(g.batch * g.heads);
  const int vec = (vecOk(q, qs) ? kVecQ : 0) | (vecOk(k, ks) ? kVecK : 0) | (vecOk(v, vs) ? kVecV : 0) |
                  (vecOk(dO, gs) ? kVecG : 0);
  MT_ATTN16_TYPES(dtype, MT_TC_DIM(g.dim, {
    const T* qp = static_cast<const T*>(q);
    const T* kp = static_cast<const T*>(k);
    const T* vp = static_cast<const T*>(v);
    const T* gp = static_cast<const T*>(dO);
    const float* lp = static_cast<const float*>(lse);
    const float* dvp = static_cast<const float*>(dvec);
    if (g.tk > 0) {
      auto kv = attnBackwardKVTc<T, D>;
      const size_t bytes = backwardKVBytes<D>();
      allowSmem(dev, kv, bytes, "attnBackwardKVTc");
      MT_LAUNCH(kv, (dim3(bh, tiles(g.tk))), kWarps * 32, bytes, s, qp, qs, kp, ks, vp, vs, gp, gs, lp, dvp,
                static_cast<T*>(dk), dks, static_cast<T*>(dv), dvs, vec, g);
      cu::checkLaunch("attnBackwardKVTc");
    }
    if (g.tq > 0) {
      auto bq = attnBackwardQTc<T, D>;
      const size_t bytes = backwardQBytes<D>();
      allowSmem(dev, bq, bytes, "attnBackwardQTc");
      MT_LAUNCH(bq, (dim3(bh, tiles(g.tq))), kWarps * 32, bytes, s, qp, qs, kp, ks, vp, vs, gp, gs, lp, dvp,
                static_cast<T*>(dq), dqs, vec, g);
      cu::checkLaunch("attnBackwardQTc");
    }
  }));
}

}  // namespace mt
