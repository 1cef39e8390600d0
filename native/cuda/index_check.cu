// Index range checks that stay on the device: a kernel records the first position of an index
// outside [0, hi) in a flag the host reads at its next synchronizing call, so embedding and
// cross-entropy need no copy of their indices to the host. Also the embedding gather that uses
// it (rows of bad ids read nothing and come out 0).
#include <cstdint>
#include "cuda/common.cuh"
#include "cuda/index_check.h"
#include "cuda/runtime.h"
#include "cuda/vec.cuh"

namespace mt {
namespace {

using u64 = unsigned long long;

// flag = max over bad positions i of n - i (0: none), i.e. the first bad position is n - flag;
// count = the indices that are not `ignore`. Integer atomics: the results do not depend on order.
template <typename I>
__global__ void checkRange(const I* ids, int64_t n, int64_t hi, int64_t ignore, u64* flag, u64* count) {
  u64 kept = 0;
  MT_CU_LOOP(i, n) {
    const int64_t v = int64_t(ids[i]);
    if (v == ignore) continue;
    kept++;
    if (v < 0 || v >= hi) atomicMax(flag, u64(n - i));
  }
  if (count && kept) atomicAdd(count, kept);
}

template <typename T, typename I>
__global__ void gatherChecked(const I* ids, int64_t n, const T* w, int64_t V, int64_t D, T* out, u64* flag) {
  MT_CU_LOOP(e, n * D) {
    const int64_t row = e / D, j = e % D;
    const int64_t id = int64_t(ids[row]);
    if (id >= 0 && id < V) {
      out[e] = w[id * D + j];
    } else {
      cu::st(out + e, 0.0);
      if (j == 0) atomicMax(flag, u64(n - row));
    }
  }
}

// gatherChecked 16 bytes a load and store (D a whole number of vectors, w and out 16-byte
// aligned): one id load and one 64-bit division per vector instead of per element; the same
// values (a copy, zeros for bad ids) and the same flag.
template <typename T, typename I>
__global__ void gatherCheckedVec(const I* ids, int64_t n, const T* w, int64_t V, int64_t D, T* out, u64* flag) {
  using Vt = cu::Vec<T>;
  const int64_t dv = D / cu::kVec<T>;
  MT_CU_LOOP(e, n * dv) {
    const int64_t row = e / dv, jv = e % dv;
    const int64_t id = int64_t(ids[row]);
    if (id >= 0 && id < V) {
      reinterpret_cast<Vt*>(out)[e] = reinterpret_cast<const Vt*>(w + id * D)[jv];
    } else {
      Vt z;
#pragma unroll
      for (int k = 0; k < cu::kVec<T>; k++) cu::st(z.v + k, 0.0);
      reinterpret_cast<Vt*>(out)[e] = z;
      if (jv == 0) atomicMax(flag, u64(n - row));
    }
  }
}

#define MT_CU_INDEX_TYPE(D, OP, ...)                                  \
  switch (D) {                                                        \
    case cu::I32: { using I = int32_t; __VA_ARGS__; break; }           \
    case cu::I64: { using I = int64_t; __VA_ARGS__; break; }           \
    default: cu::fail(std::string(OP) + ": indices must be i32 or i64"); \
  }

}  // namespace

void cudaIndexCheck(int dev, int idDtype, const void* ids, int64_t n, int64_t hi, int64_t ignore, void* flag,
                    void* count) {
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  cudaCheck(cudaMemsetAsync(flag, 0, sizeof(u64), s), "cudaMemsetAsync(index check flag)");
  if (count) cudaCheck(cudaMemsetAsync(count, 0, sizeof(u64), s), "cudaMemsetAsync(index count)");
  if (n == 0) return;
  MT_CU_INDEX_TYPE(idDtype, "index check", {
    auto kern = checkRange<I>;
    MT_LAUNCH(kern, cu::blocksFor(n), cu::kThreads, 0, s, static_cast<const I*>(ids), n, hi, ignore,
              static_cast<u64*>(flag), static_cast<u64*>(count));
  });
  cu::checkLaunch("checkRange");
}

void cudaEmbeddingGather(int dev, int dtype, int idDtype, const void* ids, int64_t n, const void* w, int64_t V,
                         int64_t D, void* out, void* flag) {
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  if (D == 0) {  // nothing to gather, but the ids are still checked
    cudaIndexCheck(dev, idDtype, ids, n, V, INT64_MIN, flag, nullptr);
    return;
  }
  cudaCheck(cudaMemsetAsync(flag, 0, sizeof(u64), s), "cudaMemsetAsync(embedding flag)");
  if (n == 0) return;
  const bool vec = cu::aligned16(w) && cu::aligned16(out);
  MT_CU_FLOAT(dtype, "embedding", MT_CU_INDEX_TYPE(idDtype, "embedding", {
    if (vec && D % cu::kVec<T> == 0) {
      auto gatherVec = gatherCheckedVec<T, I>;
      MT_LAUNCH(gatherVec, cu::blocksFor(n * (D / cu::kVec<T>)), cu::kThreads, 0, s, static_cast<const I*>(ids), n,
                static_cast<const T*>(w), V, D, static_cast<T*>(out), static_cast<u64*>(flag));
    } else {
      auto kern = gatherChecked<T, I>;
      MT_LAUNCH(kern, cu::blocksFor(n * D), cu::kThreads, 0, s, static_cast<const I*>(ids), n, static_cast<const T*>(w),
                V, D, static_cast<T*>(out), static_cast<u64*>(flag));
    }
  }));
  cu::checkLaunch("gatherChecked");
}

}  // namespace mt
