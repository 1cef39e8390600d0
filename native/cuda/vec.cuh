// 16-byte vectorized access for the flat element-wise kernels: a contiguous run is read and
// written 16 bytes at a time (4 f32, 8 bf16/f16, 2 f64) when every pointer is 16-byte aligned, and
// element by element otherwise and for the tail. Values are the same either way: only the width
// of the memory transactions changes.
#pragma once
#include <cstdint>
#include "cuda/common.cuh"

namespace mt {
namespace cu {

template <typename T>
constexpr int kVec = 16 / int(sizeof(T));

template <typename T>
struct alignas(16) Vec {
  T v[kVec<T>];
};

// W elements read or written as one access of W * sizeof(T) bytes (2, 4, 8 or 16).
template <typename T, int W>
struct alignas(W * sizeof(T)) Pack {
  T v[W];
};

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
inline bool alignedTo(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Vectors handled by the vector loop when `vec`, the rest by the element loop from there on.
template <typename T>
__host__ __device__ inline int64_t vectorCount(int64_t n, bool vec) {
  return vec ? n / kVec<T> : 0;
}

}  // namespace cu
}  // namespace mt

// Grid-stride loop over the vectors [0, nv), then over the elements [nv * kVec<T>, n).
#define MT_CU_VEC_LOOP(T, iv, nv) \
  for (int64_t iv = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; iv < (nv); iv += int64_t(gridDim.x) * blockDim.x)
#define MT_CU_TAIL_LOOP(T, i, nv, n)                                                                 \
  for (int64_t i = (nv) * ::mt::cu::kVec<T> + int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)
