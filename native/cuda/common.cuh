// Shared by the .cu kernel files: dtype codes (native/tensor/dtype.h's), loads and stores that
// compute 16-bit floats in float (rounding to nearest even, as the CPU kernels do), launch
// checks, and strided index arithmetic. No N-API here: launchers throw std::runtime_error,
// which the bindings turn into JS errors.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>
#include <cstdint>
#include <stdexcept>
#include <string>
#include "cuda/census.h"

namespace mt {
namespace cu {

enum DT : int { F32 = 0, F64 = 1, BF16 = 2, F16 = 3, I32 = 4, I64 = 5 };
using bf16 = __nv_bfloat16;
using f16 = __half;

template <typename T> struct Acc { using type = T; };
template <> struct Acc<bf16> { using type = float; };
template <> struct Acc<f16> { using type = float; };

template <typename T>
__device__ __forceinline__ typename Acc<T>::type ld(const T* p) { return *p; }
template <>
__device__ __forceinline__ float ld<bf16>(const bf16* p) { return __bfloat162float(*p); }
template <>
__device__ __forceinline__ float ld<f16>(const f16* p) { return __half2float(*p); }

template <typename T, typename V>
__device__ __forceinline__ void st(T* p, V v) {
  if constexpr (std::is_same_v<T, bf16>) *p = __float2bfloat16_rn(float(v));
  else if constexpr (std::is_same_v<T, f16>) *p = __float2half_rn(float(v));
  else *p = T(v);
}

inline void fail(const std::string& msg) { throw std::runtime_error(msg); }

// Launch-configuration errors of the kernel just queued (its execution errors surface at the next
// synchronizing call: a copy to the host, or cudaSyncCompute).
inline void checkLaunch(const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail(std::string(kernel) + ": CUDA launch failed: " + cudaGetErrorString(e));
}

// Every kernel launch goes through MT_LAUNCH so the emulation build (native/cuda/emu/, compiled
// as plain C++) can run the same launch on the CPU. Under nvcc it is exactly
// kernel<<<grid, block, smemBytes, stream>>>(args...). A template kernel whose name has a comma
// cannot be a macro argument; name it through a local pointer first:
//   auto k = addBias<T, float>;
//   MT_LAUNCH(k, cu::blocksFor(n), cu::kThreads, 0, s, out, bias, n);
// A grid or block with commas goes in parentheses: MT_LAUNCH(k, (dim3(x, y)), ...).
// Dynamic shared memory is declared with MT_DYNAMIC_SHARED(float, smem); (16-byte aligned): plain
// C++ has no spelling of `extern __shared__ T smem[]` that the emulation could point at a launch's buffer.
// Each launch is counted by the launch census when it is on (census.h; one branch when off), and
// timed between events around it when the census is timed (one more branch when off).
#ifdef MESHTRAIN_CUDA_EMU
#define MT_LAUNCH(kernel, grid, block, smemBytes, stream, ...)                                        \
  do {                                                                                                \
    MT_CENSUS_LAUNCH(kernel, grid, block);                                                            \
    ::mt::emu::launch(#kernel, __FILE__, __LINE__, kernel, grid, block, smemBytes, stream, ##__VA_ARGS__); \
    MT_CENSUS_DONE(stream);                                                                           \
  } while (0)
#define MT_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::mt::emu::dynamicShared())
#else
#define MT_LAUNCH(kernel, grid, block, smemBytes, stream, ...) \
  do {                                                         \
    MT_CENSUS_LAUNCH(kernel, grid, block);                     \
    kernel<<<grid, block, smemBytes, stream>>>(__VA_ARGS__);   \
    MT_CENSUS_DONE(stream);                                    \
  } while (0)
#define MT_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) T name[]
#endif
#define MT_CENSUS_LAUNCH(kernel, grid, block)                                                             \
  do {                                                                                                    \
    if (__builtin_expect(::mt::census::on, 0)) ::mt::cu::censusLaunch(#kernel, __FILE__, __LINE__, grid, block); \
  } while (0)

inline void censusLaunch(const char* kernel, const char* file, int line, dim3 g, dim3 b) {
  census::launch(kernel, file, line, double(g.x) * g.y * g.z * double(b.x) * b.y * b.z);
}

constexpr int kThreads = 256;
inline unsigned blocksFor(int64_t n, int64_t perThread = 1) {
  int64_t b = (n + kThreads * perThread - 1) / (kThreads * perThread);
  if (b < 1) b = 1;
  return unsigned(b < 65535 * 16 ? b : 65535 * 16);  // grid-stride loops cover the rest
}

#define MT_CU_LOOP(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// Up to 8 dims with two stride sets (the TypeScript side merges dims, so real views need few).
constexpr int kMaxDims = 8;
struct Dims2 {
  int nd;
  int64_t shape[kMaxDims];
  int64_t s0[kMaxDims];
  int64_t s1[kMaxDims];
};

// The offsets under both stride sets of linear (row-major) index i.
__device__ __forceinline__ void offsets2(const Dims2& d, int64_t i, int64_t* o0, int64_t* o1) {
  int64_t a = 0, b = 0;
  for (int k = d.nd - 1; k >= 0; k--) {
    int64_t q = i % d.shape[k];
    i /= d.shape[k];
    a += q * d.s0[k];
    b += q * d.s1[k];
  }
  *o0 = a;
  *o1 = b;
}

}  // namespace cu
}  // namespace mt

// Binds T to the element type of a floating dtype code, else throws naming OP.
#define MT_CU_FLOAT(D, OP, ...)                                   \
  switch (D) {                                                    \
    case ::mt::cu::F32: { using T = float; __VA_ARGS__; break; }   \
    case ::mt::cu::F64: { using T = double; __VA_ARGS__; break; }  \
    case ::mt::cu::BF16: { using T = ::mt::cu::bf16; __VA_ARGS__; break; } \
    case ::mt::cu::F16: { using T = ::mt::cu::f16; __VA_ARGS__; break; }   \
    default: ::mt::cu::fail(std::string(OP) + ": needs a floating-point dtype"); \
  }

#define MT_CU_ALL(D, OP, ...)                                     \
  switch (D) {                                                    \
    case ::mt::cu::I32: { using T = int32_t; __VA_ARGS__; break; } \
    case ::mt::cu::I64: { using T = int64_t; __VA_ARGS__; break; } \
    default: MT_CU_FLOAT(D, OP, __VA_ARGS__);                     \
  }

namespace mt {
namespace cu {

// Sum or max of one value per thread over a block of kThreads threads, in a fixed tree order
// (deterministic). Every thread gets the result. `buf` is kThreads entries of shared memory.
template <bool kMax, typename A>
__device__ __forceinline__ A blockReduce(A v, A* buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) {
      A o = buf[threadIdx.x + w];
      A& mine = buf[threadIdx.x];
      if constexpr (kMax) mine = (o > mine || o != o) ? o : mine;
      else mine = mine + o;
    }
    __syncthreads();
  }
  A r = buf[0];
  __syncthreads();  // buf may be reused right after
  return r;
}

// An optimizer update's products and fused multiply-adds, spelled out: left to contraction, nvcc
// fuses `a*b + c*d` on one side or the other depending on the kernel instance, and the H200 run of
// stop 19 found eager, graph-slot and device-decided instances of SGD (f32 Nesterov) and Adam (f64
// state, L2) one ulp apart. The emulated device runs the same intrinsics (emu/kernel.h).
__device__ __forceinline__ float fmaRn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fmaRn(double a, double b, double c) { return __fma_rn(a, b, c); }
__device__ __forceinline__ float mulRn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mulRn(double a, double b) { return __dmul_rn(a, b); }
// A sum no product is fused into (loss.cu's sums of exponentials: exp ends in a product).
__device__ __forceinline__ float addRn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double addRn(double a, double b) { return __dadd_rn(a, b); }

}  // namespace cu
}  // namespace mt
