// Device-side CUDA for the emulated device (test tool; docs/gpu.md, "Emulated device").
// Force-included when the MESHTRAIN_CUDA_EMU build compiles native/cuda/*.cu as C++: the
// qualifiers become nothing, threadIdx/blockIdx/blockDim/gridDim read the running emulated
// thread, and MT_LAUNCH (common.cuh) calls launch() below, which runs the grid's blocks one after
// another, each block's threads as fibers that switch at barriers and warp collectives (fibers.cc).
#pragma once
#include <math.h>  // the float overloads (expf for exp(float)) in the global namespace, as on the device
#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include "cudart.h"
#include "graph.h"
#include "half.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// Blocks of a launch run one at a time and launches are serialized, so one static instance per
// declaration is each block's shared memory. Dynamic shared memory: MT_DYNAMIC_SHARED (common.cuh).
#define __shared__ static
#define __constant__ static
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __grid_constant__

namespace mt {
namespace emu {

struct BlockCoords {
  uint3 blockIdx;
  dim3 blockDim, gridDim;
};
struct ThreadCoords {
  uint3 threadIdx;
};
extern thread_local const BlockCoords* tBlock;
extern thread_local const ThreadCoords* tThread;

// Barriers and warp collectives (fibers.cc). `site` tells two __syncthreads apart.
void syncThreads(const char* site);
void syncWarp(unsigned mask);
// Lane `src` (of the caller's width-lane segment) gets the value each lane in `mask` passes.
uint64_t warpShuffle(unsigned mask, uint64_t value, int src, int width, const char* what);
unsigned warpBallot(unsigned mask, bool pred);
// Every lane in `mask` passes `bytes` (at most kGatherBytes) and gets all lanes' in all[lane * bytes]
// (slots of lanes outside the mask untouched): the exchange under warp-wide register operations (mma_sync.cuh).
constexpr int kGatherBytes = 32;
void warpGather(unsigned mask, const void* mine, int bytes, void* all, const char* what);
// cp.async (cp_async.cuh): a thread's copies are queued and land only when asyncWait covers their
// committed group, so shared memory read before the wait (and its barrier) still holds old bytes.
void asyncCopy(void* dst, const void* src, int bytes);
void asyncCommit();
void asyncWait(int pending);  // until at most `pending` of this thread's committed groups are open
unsigned activeMask();
unsigned char* dynamicShared();
[[noreturn]] void kernelFault(const std::string& what);

struct LaunchInfo {
  const char* name;
  const char* file;
  int line;
  const void* fn;
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
};
// Checks the configuration and the pointer arguments; false (error recorded) when it must not run.
bool beginLaunch(const LaunchInfo& li, const void* const* ptrs, int nPtrs);
// Runs every block of the grid, each thread calling body(ctx); then checks the guard bytes.
void runGrid(const LaunchInfo& li, void (*body)(void*), void* ctx);
// MESHTRAIN_CUDA_EMU_SKIP_WORK=1: launches are checked and counted but never run (nor the
// reference libraries' bodies, fresh-memory fills and guard scans), so a step costs what its
// host code costs. Device values are garbage and copies to the host read zeros; for measuring
// host cost only (bench/gpu_host_floor.ts).
bool skipWork();

template <typename P>
void pointerArg(const P& p, const void** out, int* n) {
  if constexpr (std::is_pointer_v<P>) out[(*n)++] = static_cast<const void*>(p);
}

// Runs a launch's grid over its parameter tuple: each thread gets its own copy of the parameters.
template <typename... P>
void runLaunch(const LaunchInfo& li, void (*kernel)(P...), const std::tuple<std::decay_t<P>...>& params) {
  using Params = std::tuple<std::decay_t<P>...>;
  struct Ctx {
    void (*kernel)(P...);
    const Params* params;
  } ctx{kernel, &params};
  runGrid(li,
          [](void* c) {
            auto* x = static_cast<Ctx*>(c);
            Params own = *x->params;
            std::apply(x->kernel, own);
          },
          &ctx);
}

// A launch recorded by a capturing stream: the configuration and arguments by value, as a real
// kernel node keeps them; pointer arguments are checked again at each replay (graph.cc).
template <typename... P>
struct CapturedLaunch {
  LaunchInfo li;
  void (*kernel)(P...);
  std::tuple<std::decay_t<P>...> params;
  static void run(void* c) {
    auto* x = static_cast<CapturedLaunch*>(c);
    const void* ptrs[sizeof...(P) + 1] = {};
    int nPtrs = 0;
    std::apply([&](const auto&... p) { (pointerArg(p, ptrs, &nPtrs), ...); }, x->params);
    if (!replayLaunchOk(x->li, ptrs, nPtrs) || skipWork()) return;
    runLaunch(x->li, x->kernel, x->params);
  }
  static void drop(void* c) { delete static_cast<CapturedLaunch*>(c); }
};

// MT_LAUNCH under emulation. Arguments convert to the kernel's parameter types as a launch does.
template <typename... P, typename... A>
void launch(const char* name, const char* file, int line, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "MT_LAUNCH: the argument count differs from the kernel's parameters");
  using Params = std::tuple<std::decay_t<P>...>;
  Params params(std::forward<A>(args)...);
  const void* ptrs[sizeof...(P) + 1] = {};
  int nPtrs = 0;
  std::apply([&](const auto&... p) { (pointerArg(p, ptrs, &nPtrs), ...); }, params);
  LaunchInfo li{name, file, line, reinterpret_cast<const void*>(kernel), grid, block, smem, stream};
  if (!beginLaunch(li, ptrs, nPtrs)) return;
  // A capturing stream records the launch instead of running it (the same checks ran above).
  if (anyCapture() && captureStatus(stream) != cudaStreamCaptureStatusNone) {
    using Rec = CapturedLaunch<P...>;
    auto* rec = new Rec{li, kernel, std::move(params)};
    if (recordLaunch(li, &Rec::run, rec, &Rec::drop) != cudaStreamCaptureStatusNone) return;
    Params again = rec->params;  // the capture ended in between: run it as a plain launch
    delete rec;
    if (!skipWork()) runLaunch(li, kernel, again);
    return;
  }
  if (skipWork()) return;
  runLaunch(li, kernel, params);
}

template <typename T>
T shuffleAs(unsigned mask, T v, int src, int width, const char* what) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warpShuffle(mask, bits, src, width, what);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}
inline int laneId() {
  const dim3& d = tBlock->blockDim;
  const uint3& t = tThread->threadIdx;
  return int((t.x + d.x * (t.y + d.y * t.z)) % 32);
}

}  // namespace emu
}  // namespace mt

#define threadIdx (::mt::emu::tThread->threadIdx)
#define blockIdx (::mt::emu::tBlock->blockIdx)
#define blockDim (::mt::emu::tBlock->blockDim)
#define gridDim (::mt::emu::tBlock->gridDim)
constexpr int warpSize = 32;

#define MT_EMU_STR2(x) #x
#define MT_EMU_STR(x) MT_EMU_STR2(x)
#define __syncthreads() ::mt::emu::syncThreads(__FILE__ ":" MT_EMU_STR(__LINE__))
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::mt::emu::syncWarp(mask); }
inline void __threadfence() {}
inline void __threadfence_block() {}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return ::mt::emu::shuffleAs(mask, v, (::mt::emu::laneId() & ~(width - 1)) + (src & (width - 1)), width, "__shfl_sync");
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = ::mt::emu::laneId();
  int src = (lane % width) >= int(delta) ? lane - int(delta) : lane;
  return ::mt::emu::shuffleAs(mask, v, src, width, "__shfl_up_sync");
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  int lane = ::mt::emu::laneId();
  int src = (lane % width) + int(delta) < width ? lane + int(delta) : lane;
  return ::mt::emu::shuffleAs(mask, v, src, width, "__shfl_down_sync");
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
  int lane = ::mt::emu::laneId();
  int src = lane ^ laneMask;
  if (src / width != lane / width) src = lane;  // outside the caller's segment: its own value
  return ::mt::emu::shuffleAs(mask, v, src, width, "__shfl_xor_sync");
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return ::mt::emu::warpBallot(mask, pred != 0); }
inline int __any_sync(unsigned mask, int pred) { return ::mt::emu::warpBallot(mask, pred != 0) != 0; }
inline int __all_sync(unsigned mask, int pred) { return ::mt::emu::warpBallot(mask, pred != 0) == mask; }
inline unsigned __activemask() { return ::mt::emu::activeMask(); }

// Atomics: launches are serialized and a block's threads are fibers of one OS thread, so a plain
// read-modify-write is atomic here.
template <typename T>
T atomicAdd(T* p, T v) {
  T old = *p;
  *p = T(old + v);
  return old;
}
template <typename T>
T atomicSub(T* p, T v) {
  T old = *p;
  *p = T(old - v);
  return old;
}
template <typename T>
T atomicMax(T* p, T v) {
  T old = *p;
  if (v > old) *p = v;
  return old;
}
template <typename T>
T atomicMin(T* p, T v) {
  T old = *p;
  if (v < old) *p = v;
  return old;
}
template <typename T>
T atomicExch(T* p, T v) {
  T old = *p;
  *p = v;
  return old;
}
template <typename T>
T atomicCAS(T* p, T compare, T v) {
  T old = *p;
  if (old == compare) *p = v;
  return old;
}
inline unsigned atomicInc(unsigned* p, unsigned limit) {
  unsigned old = *p;
  *p = old >= limit ? 0 : old + 1;
  return old;
}

// Math intrinsics with the CPU's libm. The device's fast versions (__expf, __logf, __fdividef)
// and its expf/logf can differ from these in the last bits; the _rn forms are exact either way.
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return x != x ? 0.0f : x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
inline float exp10f(float x) { return powf(10.0f, x); }
// Single correctly rounded operations; volatile keeps the compiler from fusing them into an FMA.
inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
inline double __dsub_rn(double a, double b) { volatile double r = a - b; return r; }
inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
inline double __ddiv_rn(double a, double b) { volatile double r = a / b; return r; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline double __dsqrt_rn(double x) { return sqrt(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __int_as_float(int v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int __float_as_int(float f) { int v; std::memcpy(&v, &f, 4); return v; }
inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned v; std::memcpy(&v, &f, 4); return v; }
inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
inline long long __double_as_longlong(double d) { long long v; std::memcpy(&v, &d, 8); return v; }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(unsigned(v)); }
inline int __clzll(long long v) { return v == 0 ? 64 : __builtin_clzll((unsigned long long)v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline unsigned __brev(unsigned v) {
  unsigned r = 0;
  for (int i = 0; i < 32; i++) r |= ((v >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)((unsigned __int128)a * b >> 64);
}
template <typename T>
T __ldg(const T* p) { return *p; }
// The device's global min/max overloads.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
