// The embedding backward: a scatter-add made deterministic by summing each id's positions in
// position order (grouped by embedding_sort.cu). The checked gather is in index_check.cu.
// Reference: native/cpu/embedding.cc.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "cuda/vec.cuh"

namespace mt {
namespace {

// add: the sum goes onto what dw holds, rounded once (a parameter's .grad).
template <typename T>
__global__ void scatterSum(const int64_t* order, const int64_t* start, const T* g, int64_t V, int64_t D, T* dw, bool add) {
  using C = typename cu::Acc<T>::type;
  MT_CU_LOOP(i, V * D) {
    int64_t v = i / D, j = i % D;
    C acc = C(0);
    for (int64_t k = start[v]; k < start[v + 1]; k++) acc += cu::ld(g + order[k] * D + j);
    cu::st(dw + i, add ? acc + C(cu::ld(dw + i)) : acc);
  }
}

// scatterSum with 16 bytes per load and store (D a multiple of the vector, g and dw 16-byte
// aligned): each thread sums kVec neighbouring columns, each in the same position order as the
// scalar kernel, so the values are its own bit for bit; the row's bounds and the 64-bit division
// are paid once per vector instead of once per element.
template <typename T>
__global__ void scatterSumVec(const int64_t* order, const int64_t* start, const T* g, int64_t V, int64_t D, T* dw, bool add) {
  using C = typename cu::Acc<T>::type;
  using Vt = cu::Vec<T>;
  constexpr int kV = cu::kVec<T>;
  const int64_t dv = D / kV;
  MT_CU_LOOP(iv, V * dv) {
    const int64_t v = iv / dv, jv = iv % dv;
    C acc[kV];
#pragma unroll
    for (int e = 0; e < kV; e++) acc[e] = C(0);
    for (int64_t k = start[v]; k < start[v + 1]; k++) {
      const Vt gv = reinterpret_cast<const Vt*>(g + order[k] * D)[jv];
#pragma unroll
      for (int e = 0; e < kV; e++) acc[e] += cu::ld(gv.v + e);
    }
    Vt* out = reinterpret_cast<Vt*>(dw) + iv;
    Vt o;
    if (add) {
      const Vt old = *out;
#pragma unroll
      for (int e = 0; e < kV; e++) cu::st(o.v + e, acc[e] + C(cu::ld(old.v + e)));
    } else {
#pragma unroll
      for (int e = 0; e < kV; e++) cu::st(o.v + e, acc[e]);
    }
    *out = o;
  }
}

}  // namespace

void cudaEmbeddingBackward(int dev, int dtype, const int64_t* order, const int64_t* start, const void* g, int64_t V,
                           int64_t D, void* dw, bool add) {
  if (V * D == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const bool vec = cu::aligned16(g) && cu::aligned16(dw);
  MT_CU_FLOAT(dtype, "embedding backward", {
    if (vec && D % cu::kVec<T> == 0)
      MT_LAUNCH(scatterSumVec<T>, cu::blocksFor(V * (D / cu::kVec<T>)), cu::kThreads, 0, s, order, start, static_cast<const T*>(g), V, D,
                static_cast<T*>(dw), add);
    else
      MT_LAUNCH(scatterSum<T>, cu::blocksFor(V * D), cu::kThreads, 0, s, order, start, static_cast<const T*>(g), V, D,
                static_cast<T*>(dw), add);
  });
  cu::checkLaunch("embeddingBackward");
}

}  // namespace mt
