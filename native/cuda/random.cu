// Uniform samples and dropout masks on the device from the CPU's counter-based generator
// (Philox4x32-10, native/tensor/philox.h): element g depends only on (seed, offset + g), and the
// arithmetic is the CPU's in double, each operation (one of them an explicit fused multiply-add)
// rounded once as there, so the values are the CPU's bit for bit.
// (Normal samples stay on the CPU: its float log/cos/sin are not the device's, to the last bit.)
// Inside a CUDA graph the (seed, offset) cannot be launch arguments (a replay would repeat them):
// the launch then carries `base`, the device's generator base {seed, offset} (u64 each), and the
// counter relative to it; each replay writes the host generator's state there first
// (cudaRandomSetBase). Eager launches pass base = null and are unchanged.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "tensor/philox.h"

namespace mt {
namespace {

// (0, 1], as the CPU's unit().
__device__ __forceinline__ double unit(uint32_t hi, uint32_t lo) {
  uint64_t bits = (uint64_t(hi) << 21) ^ uint64_t(lo >> 11);
  return __ddiv_rn(double(bits & ((uint64_t(1) << 53) - 1)) + 1.0, 9007199254740992.0);
}

template <typename T>
__global__ void uniformOrMask(int kind, T* p, int64_t n, uint32_t k0, uint32_t k1, uint64_t first,
                              const uint64_t* base, double a, double b) {
  if (base != nullptr) {
    const uint64_t seed = base[0];
    k0 = uint32_t(seed);
    k1 = uint32_t(seed >> 32);
    first += base[1];
  }
  MT_CU_LOOP(i, n) {
    uint32_t w[4];
    philox4x32(k0, k1, first + uint64_t(i), w);
    double u = unit(w[0], w[1]);
    // fma(b - a, 1 - u, a), as the CPU computes it (random.cc).
    double v = kind == 0 ? __fma_rn(__dsub_rn(b, a), __dsub_rn(1.0, u), a)
                         : (u <= a ? 0.0 : __ddiv_rn(1.0, __dsub_rn(1.0, a)));
    cu::st(p + i, v);
  }
}

// One thread: the base a replay's random kernels read.
__global__ void setBase(uint64_t* base, uint64_t seed, uint64_t offset) {
  base[0] = seed;
  base[1] = offset;
}

}  // namespace

void cudaRandomUniform(int dev, int kind, int dtype, void* p, int64_t n, uint64_t seed, uint64_t first,
                       const uint64_t* base, double a, double b) {
  if (kind != 0 && kind != 2) cu::fail("random: only uniform (0) and dropout masks (2) run on CUDA");
  if (base != nullptr && reinterpret_cast<uintptr_t>(base) % alignof(uint64_t) != 0) {
    cu::fail("random: the generator base is not 8-byte aligned");
  }
  if (n == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "random",
              MT_LAUNCH(uniformOrMask<T>, cu::blocksFor(n), cu::kThreads, 0, s, kind, static_cast<T*>(p), n, uint32_t(seed),
                        uint32_t(seed >> 32), first, base, a, b));
  cu::checkLaunch("random");
}

void cudaRandomSetBase(int dev, uint64_t* base, uint64_t seed, uint64_t offset) {
  if (reinterpret_cast<uintptr_t>(base) % alignof(uint64_t) != 0) cu::fail("randomSetBase: the base is not 8-byte aligned");
  cudaUseDevice(dev);
  MT_LAUNCH(setBase, 1, 1, 0, computeStream(dev), base, seed, offset);
  cu::checkLaunch("randomSetBase");
}

}  // namespace mt
