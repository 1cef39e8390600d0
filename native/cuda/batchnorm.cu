// Batch normalization over the channel dim of a dense activation viewed as [outer, C, inner]
// (NCHW: [N, C, H*W]; channels-last: [N*H*W, C, 1]). Three launches per pass, each reading
// memory coalesced in both layouts:
//  1. partials: a block per (chunk of `outer` rows, group of channels) sums its tile in double
//     (forward: the chunk's mean, then its squared deviations from it — two passes, the second
//     from cache, as the CPU's chunks; backward: Σ gy and Σ gy·(x − mean) in one pass) and
//     writes one fixed-order result per (chunk, channel) to scratch;
//  2. finish: a block per channel merges its chunks in a fixed tree (Chan's formula for the
//     moments), writes the statistics or weight/bias gradients and the per-channel coefficients;
//  3. apply: y = a·x + b (forward) or gx = a·gy + b·x + d (backward), the same tiling as 1.
// No atomics: repeated runs are bit-identical. Reference: native/cpu/batchnorm.cc.
// ReLU fused in (ResNet): the apply pass writes relu(y), or relu(y + residual), rounding where the
// separate ops would; backward masks gy by the saved output y > 0 as it reads it, in both passes.
// Weight and bias (W) are the statistics' type or, for 16-bit x, x's own: read exactly, and the
// gradients rounded to the statistics' type first, then to W — what a cast before and after gives.
#include "cuda/common.cuh"
#include "cuda/image_ops.h"
#include "cuda/runtime.h"

namespace mt {
namespace {

using cu::kThreads;

template <typename T>
using Stat = std::conditional_t<std::is_same_v<T, double>, double, float>;

// About this many elements per block and pass: ~32 per thread, and numel/8192 partials.
constexpr int64_t kBlockElems = 8192;

// How a block's threads cover a tile of [rows, G channels, inner]. A row's G·inner values are
// contiguous, so consecutive threads take consecutive addresses: across channels when
// inner == 1 (channels-last), across H·W otherwise. `inner` above kThreads: one channel per
// block, each thread stepping kThreads through every row ("wide").
struct Tiling {
  int64_t outer, C, inner;
  int G, L, R;  // channels per group, lanes per row (G·inner, or kThreads when wide), rows per step
  int64_t rowsPerChunk, chunks, groups;
  __host__ __device__ bool wide() const { return inner > kThreads; }
};

Tiling tilingOf(int64_t outer, int64_t C, int64_t inner) {
  Tiling t{outer, C, inner, 1, kThreads, 1, 1, 0, 0};
  if (outer == 0 || inner == 0) return t;  // no values: no partials, no apply
  if (!t.wide()) {
    // Rows of at least 32 contiguous values where the channels allow (a warp's worth).
    const int64_t g = inner >= 32 ? 1 : std::min<int64_t>(C, std::max<int64_t>(1, 32 / inner));
    t.G = int(g);
    t.L = int(g * inner);
    t.R = kThreads / t.L;
  }
  const int64_t rowElems = t.wide() ? inner : int64_t(t.G) * inner;
  int64_t rows = std::max<int64_t>(1, kBlockElems / rowElems);
  rows = (rows + t.R - 1) / t.R * t.R;  // whole steps of R rows
  t.rowsPerChunk = rows;
  t.chunks = (outer + rows - 1) / rows;
  t.groups = (C + t.G - 1) / t.G;
  return t;
}

// One thread's share of its block's tile: channel c, values i0, i0 + istep, ... < inner of rows
// r0, r0 + rstep, ...; it is member m of M threads of channel g of the group.
struct Lane {
  int64_t c;
  int g, i0, istep, r0, rstep, m, M;
  bool active;
};

__device__ __forceinline__ Lane laneOf(const Tiling& t, int64_t group) {
  const int tid = int(threadIdx.x);
  Lane l;
  if (t.wide()) {
    l = Lane{group, 0, tid, kThreads, 0, 1, tid, kThreads, true};
  } else {
    const int lane = tid % t.L, r = tid / t.L, in = int(t.inner);
    l.g = lane / in;
    l.c = group * t.G + l.g;
    l.i0 = lane % in;
    l.istep = in;
    l.r0 = r;
    l.rstep = t.R;
    l.m = r * in + l.i0;
    l.M = t.R * in;
    l.active = r < t.R && l.c < t.C;
  }
  return l;
}

// The thread index of member m of channel g.
__device__ __forceinline__ int slotOf(const Tiling& t, int g, int m) {
  if (t.wide()) return m;
  const int in = int(t.inner);
  return (m / in) * t.L + g * in + m % in;
}

// Sums N values of each channel's member threads by a fixed pairwise tree; every member gets
// its channel's sums. buf: N * kThreads doubles of shared memory; called by the whole block.
template <int N>
__device__ __forceinline__ void channelSums(double (&v)[N], double* buf, const Tiling& t, const Lane& l) {
  const int tid = int(threadIdx.x);
  for (int k = 0; k < N; k++) buf[k * kThreads + tid] = v[k];
  __syncthreads();
  int p = 1;
  while (p < l.M) p *= 2;
  for (int w = p / 2; w > 0; w /= 2) {
    if (l.active && l.m < w && l.m + w < l.M) {
      const int o = slotOf(t, l.g, l.m + w);
      for (int k = 0; k < N; k++) buf[k * kThreads + tid] += buf[k * kThreads + o];
    }
    __syncthreads();
  }
  if (l.active) {
    const int s = slotOf(t, l.g, 0);
    for (int k = 0; k < N; k++) v[k] = buf[k * kThreads + s];
  }
  __syncthreads();  // buf is reused right after
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Spelled-out roundings for the apply passes: their fused and plain forms must round alike bit
// for bit, which a compiler's own choice of which product to contract would not promise.
__device__ __forceinline__ float fmaRn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fmaRn(double a, double b, double c) { return __fma_rn(a, b, c); }

// v rounded to T and read back: what storing the separate op's output and loading it gives.
template <typename T, typename A>
__device__ __forceinline__ A rounded(A v) {
  if constexpr (std::is_same_v<T, cu::bf16> || std::is_same_v<T, cu::f16>) {
    T r;
    cu::st(&r, v);
    return cu::ld(&r);
  } else {
    return v;
  }
}

// The apply pass's epilogue: none, ReLU, or the residual added (rounded) then ReLU.
enum Epilogue { kPlain, kRelu, kAddRelu };

// gy at i, or (Mask) ReLU's gradient of it: gy where the fused output y is positive, else 0
// (reluBackward's test: NaN and -0 outputs pass nothing).
template <bool Mask, typename T>
__device__ __forceinline__ typename cu::Acc<T>::type gradAt(const T* gy, const T* y, int64_t i) {
  using A = typename cu::Acc<T>::type;
  const A g = cu::ld(gy + i);
  if constexpr (Mask) return cu::ld(y + i) > A(0) ? g : A(0);
  return g;
}

// Calls f(offset) for each of this thread's elements of chunk k.
template <typename F>
__device__ __forceinline__ void forTile(const Tiling& t, const Lane& l, int64_t k, F&& f) {
  if (!l.active) return;
  const int64_t o0 = k * t.rowsPerChunk, o1 = min64(t.outer, o0 + t.rowsPerChunk);
  for (int64_t o = o0 + l.r0; o < o1; o += l.rstep) {
    const int64_t base = (o * t.C + l.c) * t.inner;
    for (int64_t i = l.i0; i < t.inner; i += l.istep) f(base + i);
  }
}

__device__ __forceinline__ int64_t chunkRows(const Tiling& t, int64_t k) {
  return min64(t.outer, (k + 1) * t.rowsPerChunk) - k * t.rowsPerChunk;
}

// part[(k * C + c) * 2 + {0, 1}] = mean and Σ (x − mean)² of chunk k of channel c.
template <typename T>
__global__ void momentsKernel(const T* x, Tiling t, double* part) {
  __shared__ double buf[kThreads];
  const int64_t k = blockIdx.x / t.groups;
  const Lane l = laneOf(t, blockIdx.x % t.groups);
  double s[1] = {0};
  forTile(t, l, k, [&](int64_t i) { s[0] += double(cu::ld(x + i)); });
  channelSums(s, buf, t, l);
  const double mu = s[0] / double(chunkRows(t, k) * t.inner);
  double q[1] = {0};
  forTile(t, l, k, [&](int64_t i) {
    const double d = double(cu::ld(x + i)) - mu;
    q[0] += d * d;
  });
  channelSums(q, buf, t, l);
  if (l.active && l.m == 0) {
    part[(k * t.C + l.c) * 2] = mu;
    part[(k * t.C + l.c) * 2 + 1] = q[0];
  }
}

// Count, mean and squared deviations; merged with Chan et al.'s formula (as the CPU).
struct Moments {
  double n, mean, m2;
  __device__ void merge(double bn, double bmean, double bm2) {
    if (bn == 0) return;
    if (n == 0) {
      n = bn, mean = bmean, m2 = bm2;
      return;
    }
    const double n1 = n + bn, d = bmean - mean;
    mean += d * bn / n1;
    m2 += bm2 + d * d * n * bn / n1;
    n = n1;
  }
};

// One block per channel: its chunks merged (thread j takes chunks j, j + kThreads, ... in order,
// then a fixed tree), statistics written, running statistics updated, and the affine
// coefficients coef[c] = w·invstd, coef[C + c] = b − mean·w·invstd (in T's compute type).
// Training also counts the batch: counter (PyTorch's num_batches_tracked, may be null) += 1.
template <typename T, typename W>
__global__ void statsFinishKernel(Tiling t, const double* part, const W* weight, const W* bias, Stat<T>* mean,
                                  Stat<T>* invstd, Stat<T>* runMean, Stat<T>* runVar, bool training, double momentum,
                                  double eps, Stat<T>* coef, int64_t* counter) {
  __shared__ double bn[kThreads], bmean[kThreads], bm2[kThreads];
  const int64_t c = blockIdx.x, C = t.C;
  const int tid = int(threadIdx.x);
  double mu = 0, inv = 0;
  if (training) {
    Moments m{0, 0, 0};
    for (int64_t k = tid; k < t.chunks; k += kThreads)
      m.merge(double(chunkRows(t, k) * t.inner), part[(k * C + c) * 2], part[(k * C + c) * 2 + 1]);
    bn[tid] = m.n, bmean[tid] = m.mean, bm2[tid] = m.m2;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
      if (tid < w) {
        Moments a{bn[tid], bmean[tid], bm2[tid]};
        a.merge(bn[tid + w], bmean[tid + w], bm2[tid + w]);
        bn[tid] = a.n, bmean[tid] = a.mean, bm2[tid] = a.m2;
      }
      __syncthreads();
    }
    if (tid != 0) return;
    const double count = double(t.outer * t.inner), ss = bm2[0];
    mu = bmean[0];
    inv = 1.0 / sqrt(ss / count + eps);
    if (runMean) runMean[c] = Stat<T>((1 - momentum) * double(runMean[c]) + momentum * mu);
    if (runVar) runVar[c] = Stat<T>((1 - momentum) * double(runVar[c]) + momentum * ss / (count - 1));
    if (counter && c == 0) *counter += 1;
  } else {
    if (tid != 0) return;
    mu = double(runMean[c]);
    inv = 1.0 / sqrt(double(runVar[c]) + eps);
  }
  mean[c] = Stat<T>(mu);
  invstd[c] = Stat<T>(inv);
  const double scale = (weight ? double(cu::ld(weight + c)) : 1.0) * inv;
  coef[c] = Stat<T>(scale);
  coef[C + c] = Stat<T>((bias ? double(cu::ld(bias + c)) : 0.0) - mu * scale);
}

// y = a·x + b per channel, then the epilogue E (res: the residual, dense in x's layout).
template <typename T, int E>
__global__ void normalizeKernel(const T* x, T* y, Tiling t, const Stat<T>* coef, const T* res) {
  using A = typename cu::Acc<T>::type;
  const int64_t k = blockIdx.x / t.groups;
  const Lane l = laneOf(t, blockIdx.x % t.groups);
  if (!l.active) return;
  const A a = A(coef[l.c]), d = A(coef[t.C + l.c]);
  forTile(t, l, k, [&](int64_t i) {
    const A v = fmaRn(a, cu::ld(x + i), d);
    if constexpr (E == kPlain) {
      cu::st(y + i, v);
    } else {
      A z = rounded<T>(v);
      if constexpr (E == kAddRelu) z = rounded<T>(z + cu::ld(res + i));
      cu::st(y + i, z > A(0) ? z : A(0));
    }
  });
}

// part[(k * C + c) * 2 + {0, 1}] = Σ gy and Σ gy·(x − mean) over chunk k of channel c; gy masked
// by y > 0 when Mask (the fused ReLU's gradient).
template <typename T, bool Mask>
__global__ void gradSumsKernel(const T* gy, const T* x, const Stat<T>* mean, Tiling t, double* part, const T* y) {
  __shared__ double buf[2 * kThreads];
  const int64_t k = blockIdx.x / t.groups;
  const Lane l = laneOf(t, blockIdx.x % t.groups);
  const double mu = l.active ? double(mean[l.c]) : 0.0;
  double s[2] = {0, 0};
  forTile(t, l, k, [&](int64_t i) {
    const double g = double(gradAt<Mask>(gy, y, i));
    s[0] += g;
    s[1] += g * (double(cu::ld(x + i)) - mu);
  });
  channelSums(s, buf, t, l);
  if (l.active && l.m == 0) {
    part[(k * t.C + l.c) * 2] = s[0];
    part[(k * t.C + l.c) * 2 + 1] = s[1];
  }
}

// One block per channel: chunk partials summed (thread j: chunks j, j + kThreads, ..., then a
// fixed tree); gradWeight = Σ gy·x̂, gradBias = Σ gy; coefficients of gx = a·gy + b·x + d with
// training: gx = w·invstd·(gy − mean(gy) − x̂·mean(gy·x̂)); eval: gx = w·invstd·gy.
template <typename T, typename W>
__global__ void gradFinishKernel(Tiling t, const double* part, const Stat<T>* mean, const Stat<T>* invstd,
                                 const W* weight, W* gw, W* gb, bool training, Stat<T>* coef) {
  __shared__ double buf[kThreads];
  const int64_t c = blockIdx.x, C = t.C;
  double sg = 0, sgx = 0;
  for (int64_t k = threadIdx.x; k < t.chunks; k += kThreads) {
    sg += part[(k * C + c) * 2];
    sgx += part[(k * C + c) * 2 + 1];
  }
  const double is = double(invstd[c]);
  const double sumGy = cu::blockReduce<false>(sg, buf);
  const double sumGyXhat = cu::blockReduce<false>(sgx, buf) * is;
  if (threadIdx.x != 0) return;
  if (gw) cu::st(gw + c, Stat<T>(sumGyXhat));
  if (gb) cu::st(gb + c, Stat<T>(sumGy));
  if (!coef) return;
  const double n = double(t.outer * t.inner), w = weight ? double(cu::ld(weight + c)) : 1.0, mu = double(mean[c]);
  const double a = w * is;
  const double kx = training ? w * is * is * sumGyXhat / n : 0.0;  // coefficient of (x − mean)
  coef[c] = Stat<T>(a);
  coef[C + c] = Stat<T>(-kx);
  coef[2 * C + c] = Stat<T>(training ? kx * mu - a * sumGy / n : 0.0);
}

// gx = a·gy + b·x + d (gx may be null: coef is then unset); Mask: gy masked by y > 0, and gres
// (may be null) gets the masked gy: the residual's gradient.
template <typename T, bool Mask>
__global__ void gradInputKernel(const T* gy, const T* x, T* gx, Tiling t, const Stat<T>* coef, bool training,
                                const T* y, T* gres) {
  using A = typename cu::Acc<T>::type;
  const int64_t k = blockIdx.x / t.groups;
  const Lane l = laneOf(t, blockIdx.x % t.groups);
  if (!l.active) return;
  const A ca = gx ? A(coef[l.c]) : A(0), cb = gx ? A(coef[t.C + l.c]) : A(0), cd = gx ? A(coef[2 * t.C + l.c]) : A(0);
  forTile(t, l, k, [&](int64_t i) {
    const A g = gradAt<Mask>(gy, y, i);
    if (Mask && gres) cu::st(gres + i, g);
    if (!gx) return;
    if (training)
      cu::st(gx + i, fmaRn(ca, g, fmaRn(cb, cu::ld(x + i), cd)));
    else
      cu::st(gx + i, fmaRn(ca, g, cd));
  });
}

void checkGeometry(const char* op, int64_t outer, int64_t C, int64_t inner) {
  if (outer < 0 || C <= 0 || inner < 0) cu::fail(std::string(op) + ": bad geometry");
  if (C > 0x7fffffff) cu::fail(std::string(op) + ": more than 2^31 channels");
}

// Blocks of the partial and apply kernels (chunks × groups, one grid dimension).
unsigned tileBlocks(const char* op, const Tiling& t) {
  const int64_t b = t.chunks * t.groups;
  if (b > 0x7fffffff) cu::fail(std::string(op) + ": more than 2^31 tiles");
  return unsigned(b);
}

// Scratch layout: chunks × C × 2 partial doubles (when `partials`), then `coefs` × C coefficients.
template <typename S>
void scratchFor(const char* op, const Tiling& t, bool partials, int coefs, const CudaBnScratch& scratch, double** part,
                S** coef) {
  const size_t partBytes = partials ? size_t(t.chunks * t.C * 2) * sizeof(double) : 0;
  char* p = static_cast<char*>(scratch(int64_t(partBytes + size_t(coefs * t.C) * sizeof(S))));
  if (!p) cu::fail(std::string(op) + ": no scratch memory");
  *part = reinterpret_cast<double*>(p);
  *coef = reinterpret_cast<S*>(p + partBytes);
}

// True when weight and bias are x's 16-bit dtype, false when the statistics' (f32, f64 for f64 x).
bool affineIsX(const char* op, int dtype, int affineDtype) {
  const bool half = dtype == cu::BF16 || dtype == cu::F16;
  const int stat = dtype == cu::F64 ? cu::F64 : cu::F32;
  if (affineDtype == stat) return false;
  if (half && affineDtype == dtype) return true;
  cu::fail(std::string(op) + ": weight and bias must be x's 16-bit dtype or the statistics' dtype (dtype code " +
           std::to_string(affineDtype) + " for x code " + std::to_string(dtype) + ")");
  return false;
}

}  // namespace

void cudaBatchNormForward(int dev, int dtype, const void* x, void* y, int64_t outer, int64_t C, int64_t inner,
                          const void* weight, const void* bias, void* mean, void* invstd, void* runMean, void* runVar,
                          bool training, double momentum, double eps, const CudaBnScratch& scratch, int affineDtype,
                          int64_t* counter, const CudaBnRelu& relu) {
  const char* op = "batchNormForward";
  checkGeometry(op, outer, C, inner);
  const bool wx = affineIsX(op, dtype, affineDtype);
  if (relu.residual && !relu.relu) cu::fail("batchNormForward: a residual is added only before the fused ReLU");
  const int epilogue = !relu.relu ? kPlain : relu.residual ? kAddRelu : kRelu;
  const int64_t count = outer * inner;
  if (training && count <= 1) cu::fail("batchNormForward: training needs more than one value per channel");
  if (!training && (!runMean || !runVar)) cu::fail("batchNormForward: evaluation needs running statistics");
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const Tiling t = tilingOf(outer, C, inner);
  const unsigned blocks = tileBlocks(op, t);
  MT_CU_FLOAT(dtype, op, {
    using S = Stat<T>;
    double* part;
    S* coef;
    scratchFor(op, t, training, 2, scratch, &part, &coef);
    if (training) {
      auto k = momentsKernel<T>;
      MT_LAUNCH(k, blocks, kThreads, 0, s, static_cast<const T*>(x), t, part);
      cu::checkLaunch("batchNormForward (chunk moments)");
    }
    int64_t* n = training ? counter : nullptr;
    if (wx) {
      auto f = statsFinishKernel<T, T>;
      MT_LAUNCH(f, unsigned(C), kThreads, 0, s, t, part, static_cast<const T*>(weight), static_cast<const T*>(bias),
                static_cast<S*>(mean), static_cast<S*>(invstd), static_cast<S*>(runMean), static_cast<S*>(runVar),
                training, momentum, eps, coef, n);
    } else {
      auto f = statsFinishKernel<T, S>;
      MT_LAUNCH(f, unsigned(C), kThreads, 0, s, t, part, static_cast<const S*>(weight), static_cast<const S*>(bias),
                static_cast<S*>(mean), static_cast<S*>(invstd), static_cast<S*>(runMean), static_cast<S*>(runVar),
                training, momentum, eps, coef, n);
    }
    cu::checkLaunch("batchNormForward (statistics)");
    if (blocks > 0) {
      auto a = epilogue == kPlain ? normalizeKernel<T, kPlain>
               : epilogue == kRelu ? normalizeKernel<T, kRelu>
                                   : normalizeKernel<T, kAddRelu>;
      MT_LAUNCH(a, blocks, kThreads, 0, s, static_cast<const T*>(x), static_cast<T*>(y), t, coef,
                static_cast<const T*>(relu.residual));
      cu::checkLaunch("batchNormForward (normalize)");
    }
  });
}

void cudaBatchNormBackward(int dev, int dtype, const void* gy, const void* x, const void* mean, const void* invstd,
                           const void* weight, void* gx, void* gw, void* gb, int64_t outer, int64_t C, int64_t inner,
                           bool training, const CudaBnScratch& scratch, int affineDtype, const CudaBnReluGrad& relu) {
  const char* op = "batchNormBackward";
  checkGeometry(op, outer, C, inner);
  const bool wx = affineIsX(op, dtype, affineDtype);
  if (relu.gResidual && !relu.y) cu::fail("batchNormBackward: the residual's gradient needs the fused output y");
  const bool mask = relu.y != nullptr;
  if (!gx && !gw && !gb && !relu.gResidual) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const Tiling t = tilingOf(outer, C, inner);
  const unsigned blocks = tileBlocks(op, t);
  MT_CU_FLOAT(dtype, op, {
    using S = Stat<T>;
    double* part;
    S* coef;
    scratchFor(op, t, true, 3, scratch, &part, &coef);
    const T* y = static_cast<const T*>(relu.y);
    if (blocks > 0) {
      auto k = mask ? gradSumsKernel<T, true> : gradSumsKernel<T, false>;
      MT_LAUNCH(k, blocks, kThreads, 0, s, static_cast<const T*>(gy), static_cast<const T*>(x),
                static_cast<const S*>(mean), t, part, y);
      cu::checkLaunch("batchNormBackward (chunk sums)");
    }
    if (wx) {
      auto f = gradFinishKernel<T, T>;
      MT_LAUNCH(f, unsigned(C), kThreads, 0, s, t, part, static_cast<const S*>(mean), static_cast<const S*>(invstd),
                static_cast<const T*>(weight), static_cast<T*>(gw), static_cast<T*>(gb), training, gx ? coef : nullptr);
    } else {
      auto f = gradFinishKernel<T, S>;
      MT_LAUNCH(f, unsigned(C), kThreads, 0, s, t, part, static_cast<const S*>(mean), static_cast<const S*>(invstd),
                static_cast<const S*>(weight), static_cast<S*>(gw), static_cast<S*>(gb), training, gx ? coef : nullptr);
    }
    cu::checkLaunch("batchNormBackward (sums)");
    if ((gx || relu.gResidual) && blocks > 0) {
      auto g = mask ? gradInputKernel<T, true> : gradInputKernel<T, false>;
      MT_LAUNCH(g, blocks, kThreads, 0, s, static_cast<const T*>(gy), static_cast<const T*>(x), static_cast<T*>(gx), t,
                coef, training, y, static_cast<T*>(relu.gResidual));
      cu::checkLaunch("batchNormBackward (input gradient)");
    }
  });
}

}  // namespace mt
