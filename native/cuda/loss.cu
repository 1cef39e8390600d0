// Cross-entropy of [rows, C] logits against class targets, log-softmax and NLL fused: forward
// (loss and log-sum-exp per row), backward (softmax - one_hot, times the gradient). Ignored rows
// give 0. Rows of x and dx may lie at a padded pitch (xLd, dxLd >= C: a matmul output with 16-byte
// aligned rows); only the C columns are read or written. One block per row; both kernels read the
// row once (the forward keeps an online max and sum), 16 bytes a load where every row starts on a
// 16-byte boundary and one element a load otherwise, with the same values either way.
// Reference: native/cpu/loss.cc.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "cuda/vec.cuh"

namespace mt {
namespace {

template <typename T>
using Stat = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int kWarps = cu::kThreads / 32;
// 16-byte chunks a thread loads before it uses the first: enough bytes in flight per SM to keep
// HBM busy at a block per row.
constexpr int kUnroll = 4;

// The forward's exponentials. float: __expf (ex2.approx of x * log2(e): within 2 + 1.2|x| ulp,
// ~1e-6 relative for the x in [-20, 0] that weigh in the sum): expf's accurate range reduction
// costs ~10 more instructions a value, which would make the forward ALU-bound rather than
// memory-bound on an H200. double: exp.
__device__ __forceinline__ float expSum(float x) { return __expf(x); }
__device__ __forceinline__ double expSum(double x) { return exp(x); }

// Chunk k of a row: columns [k * kV, k * kV + n), n = kV but in the row's short last chunk. One
// 16-byte load when the row is aligned (kVec) and the chunk whole, element loads otherwise.
template <typename T, bool kVec>
__device__ __forceinline__ cu::Vec<T> loadChunk(const T* row, int64_t k, int n) {
  constexpr int kV = cu::kVec<T>;
  if (kVec && n == kV) return reinterpret_cast<const cu::Vec<T>*>(row)[k];
  cu::Vec<T> u{};
#pragma unroll
  for (int e = 0; e < kV; e++)
    if (e < n) u.v[e] = row[k * kV + e];
  return u;
}

// A running max m and sum s of exp(x - m) over the values seen: a larger max rescales s by
// exp(m_old - m_new), so the row is read once (Milakov and Gimelshein's online softmax). The max
// skips NaN (one instruction, fmax) and the sum carries it: exp(NaN - m) makes s NaN, as the CPU's
// lse. While m is -inf every value so far is -inf (or NaN) and adds exp(x - 0) = 0 (or NaN), not
// exp(-inf - -inf) = NaN. Adds and products are rounded on their own (addRn, mulRn): contracted into
// an FMA in one instance and not in another, the aligned and unaligned kernels would differ in the last bit.
template <typename A>
struct MaxSum {
  A m, s;

  // The first n values of a chunk, their max first: s is rescaled at most once per chunk.
  template <typename T>
  __device__ __forceinline__ void add(const cu::Vec<T>& u, int n) {
    constexpr int kV = cu::kVec<T>;
    A v[kV];
#pragma unroll
    for (int e = 0; e < kV; e++) v[e] = e < n ? A(cu::ld(u.v + e)) : A(-CUDART_INF);
    A cm = v[0];
#pragma unroll
    for (int e = 1; e < kV; e++) cm = max(cm, v[e]);
    if (cm > m) {
      s = cu::mulRn(s, expSum(A(m - cm)));
      m = cm;
    }
    const A base = m == A(-CUDART_INF) ? A(0) : m;
#pragma unroll
    for (int e = 0; e < kV; e++)
      if (e < n) s = cu::addRn(s, expSum(A(v[e] - base)));
  }

  // Commutative to the bit, so both lanes of a butterfly step hold the same pair (m is never NaN).
  __device__ __forceinline__ void merge(A m2, A s2) {
    const A mm = max(m, m2);
    s = mm == A(-CUDART_INF) ? cu::addRn(s, s2) : cu::addRn(cu::mulRn(s, A(exp(m - mm))), cu::mulRn(s2, A(exp(m2 - mm))));
    m = mm;
  }

  // Merged over this lane's group of 2 * `from` lanes (an xor butterfly over offsets from, from / 2,
  // ..., 1: each lane of the group ends with the same pair).
  __device__ __forceinline__ void warpMerge(int from) {
    for (int o = from; o > 0; o /= 2) merge(__shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
  }
};

// Thread i folds the row's 16-byte chunks i, i + kThreads, ... in that order (in registers of the
// element type's compute precision), then the block merges the threads' pairs in double in a fixed
// tree: deterministic, and the same in the aligned and unaligned kernels.
template <typename T, typename I, bool kVec>
__global__ void __launch_bounds__(cu::kThreads)
    forwardRows(const T* __restrict__ x, int64_t C, int64_t xLd, const I* __restrict__ t, int64_t ignore,
                T* __restrict__ loss, Stat<T>* __restrict__ lse) {
  using A = typename cu::Acc<T>::type;
  constexpr int kV = cu::kVec<T>;
  __shared__ double wm[kWarps], ws[kWarps];
  const int64_t r = blockIdx.x;
  const int64_t target = int64_t(t[r]);
  if (target == ignore) {
    if (threadIdx.x == 0) {
      cu::st(loss + r, 0.0);
      lse[r] = Stat<T>(0);
    }
    return;
  }
  const T* xr = x + r * xLd;
  const int64_t full = C / kV;
  const int tail = int(C - full * kV);
  MaxSum<A> acc{A(-CUDART_INF), A(0)};
  int64_t k = threadIdx.x;
  for (; k + (kUnroll - 1) * cu::kThreads < full; k += kUnroll * cu::kThreads) {
    cu::Vec<T> v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; u++) v[u] = loadChunk<T, kVec>(xr, k + u * cu::kThreads, kV);
#pragma unroll
    for (int u = 0; u < kUnroll; u++) acc.add(v[u], kV);
  }
  for (; k <= full; k += cu::kThreads) {
    const int n = k < full ? kV : tail;
    if (n == 0) break;
    acc.add(loadChunk<T, kVec>(xr, k, n), n);
  }
  MaxSum<double> row{double(acc.m), double(acc.s)};
  row.warpMerge(16);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    wm[warp] = row.m;
    ws[warp] = row.s;
  }
  __syncthreads();
  if (warp != 0) return;
  row = lane < kWarps ? MaxSum<double>{wm[lane], ws[lane]} : MaxSum<double>{-CUDART_INF, 0.0};
  row.warpMerge(kWarps / 2);
  if (lane == 0) {
    const double l = cu::addRn(row.m, log(row.s));  // not fused with log's last product, as in add()
    lse[r] = Stat<T>(l);
    // A target outside [0, C) was flagged by the device-side check (index_check.cu): read nothing.
    cu::st(loss + r, target >= 0 && target < C ? l - double(cu::ld(xr + target)) : double(CUDART_NAN));
  }
}

// One logit's gradient: g * exp(x - lse), less g at the target.
template <typename A>
__device__ __forceinline__ A gradAt(A x, A lse, A g, bool target) {
  const A v = cu::mulRn(g, A(exp(A(x - lse))));
  return target ? A(v - g) : v;
}

// dx = g * exp(x - lse) - g * onehot(target), lse saved by the forward; ignored rows get zeros.
// kVec: x and dx rows both 16-byte aligned, so chunks are loaded and stored 16 bytes at a time.
template <typename T, typename I, bool kVec>
__global__ void __launch_bounds__(cu::kThreads)
    backwardRows(const T* __restrict__ x, int64_t C, int64_t xLd, const I* __restrict__ t, int64_t ignore,
                 const Stat<T>* __restrict__ lse, const T* __restrict__ g, int64_t gStride, double scale,
                 T* __restrict__ dx, int64_t dxLd) {
  using A = typename cu::Acc<T>::type;
  using V = cu::Vec<T>;
  constexpr int kV = cu::kVec<T>;
  const int64_t r = blockIdx.x;
  const int64_t target = int64_t(t[r]);
  T* dr = dx + r * dxLd;
  const int64_t vecs = kVec ? C / kV : 0;  // columns [vecs * kV, C) one by one
  if (target == ignore) {
    V zero;
#pragma unroll
    for (int e = 0; e < kV; e++) cu::st(zero.v + e, A(0));
    for (int64_t k = threadIdx.x; k < vecs; k += cu::kThreads) reinterpret_cast<V*>(dr)[k] = zero;
    for (int64_t j = vecs * kV + threadIdx.x; j < C; j += cu::kThreads) cu::st(dr + j, A(0));
    return;
  }
  const T* xr = x + r * xLd;
  const A gr = A(double(cu::ld(g + r * gStride)) * scale);
  const A l = A(lse[r]);
  int64_t k = threadIdx.x;
  for (; k + (kUnroll - 1) * cu::kThreads < vecs; k += kUnroll * cu::kThreads) {
    V in[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; u++) in[u] = reinterpret_cast<const V*>(xr)[k + u * cu::kThreads];
#pragma unroll
    for (int u = 0; u < kUnroll; u++) {
      const int64_t c = k + u * cu::kThreads;
      V out;
#pragma unroll
      for (int e = 0; e < kV; e++) cu::st(out.v + e, gradAt(cu::ld(in[u].v + e), l, gr, c * kV + e == target));
      reinterpret_cast<V*>(dr)[c] = out;
    }
  }
  for (; k < vecs; k += cu::kThreads) {
    const V in = reinterpret_cast<const V*>(xr)[k];
    V out;
#pragma unroll
    for (int e = 0; e < kV; e++) cu::st(out.v + e, gradAt(cu::ld(in.v + e), l, gr, k * kV + e == target));
    reinterpret_cast<V*>(dr)[k] = out;
  }
  for (int64_t j = vecs * kV + threadIdx.x; j < C; j += cu::kThreads) cu::st(dr + j, gradAt(cu::ld(xr + j), l, gr, j == target));
}

void checkRows(int64_t rows) {
  if (rows > (int64_t(1) << 31) - 1) cu::fail("crossEntropy: more than 2^31 rows");
}

// A row pitch: 0 means C (contiguous rows); anything else at least C.
int64_t pitchOf(int64_t ld, int64_t C, const char* what) {
  if (ld == 0) return C;
  if (ld < C) cu::fail(std::string("crossEntropy: ") + what + " row pitch " + std::to_string(ld) + " is below C = " + std::to_string(C));
  return ld;
}

// Every row of p (ld elements apart) starts on a 16-byte boundary.
template <typename T>
bool rowsAligned(const void* p, int64_t ld) {
  return cu::aligned16(p) && (ld * int64_t(sizeof(T))) % 16 == 0;
}

}  // namespace

#define MT_CU_INDEX(D, OP, ...)                                    \
  switch (D) {                                                     \
    case cu::I32: { using I = int32_t; __VA_ARGS__; break; }        \
    case cu::I64: { using I = int64_t; __VA_ARGS__; break; }        \
    default: cu::fail(std::string(OP) + ": indices must be i32 or i64"); \
  }

void cudaCrossEntropyForward(int dev, int dtype, const void* x, int64_t rows, int64_t C, int idDtype, const void* t,
                             int64_t ignore, void* loss, void* lse, int64_t xLd) {
  checkRows(rows);
  xLd = pitchOf(xLd, C, "logits");
  if (rows == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "crossEntropy", MT_CU_INDEX(idDtype, "crossEntropy", {
    auto forward = rowsAligned<T>(x, xLd) ? forwardRows<T, I, true> : forwardRows<T, I, false>;
    MT_LAUNCH(forward, unsigned(rows), cu::kThreads, 0, s, static_cast<const T*>(x), C, xLd, static_cast<const I*>(t), ignore,
              static_cast<T*>(loss), static_cast<Stat<T>*>(lse));
  }));
  cu::checkLaunch("crossEntropyForward");
}

void cudaCrossEntropyBackward(int dev, int dtype, const void* x, int64_t rows, int64_t C, int idDtype, const void* t,
                              int64_t ignore, const void* lse, const void* g, int64_t gStride, double scale, void* dx,
                              int64_t xLd, int64_t dxLd) {
  checkRows(rows);
  xLd = pitchOf(xLd, C, "logits");
  dxLd = pitchOf(dxLd, C, "gradient");
  if (rows * C == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "crossEntropy backward", MT_CU_INDEX(idDtype, "crossEntropy backward", {
    const bool vec = rowsAligned<T>(x, xLd) && rowsAligned<T>(dx, dxLd);
    auto backward = vec ? backwardRows<T, I, true> : backwardRows<T, I, false>;
    MT_LAUNCH(backward, unsigned(rows), cu::kThreads, 0, s, static_cast<const T*>(x), C, xLd, static_cast<const I*>(t), ignore,
              static_cast<const Stat<T>*>(lse), static_cast<const T*>(g),
              gStride, scale, static_cast<T*>(dx), dxLd);
  }));
  cu::checkLaunch("crossEntropyBackward");
}

}  // namespace mt
