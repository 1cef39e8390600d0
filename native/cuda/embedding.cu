// The embedding backward: a scatter-add made deterministic by summing each id's positions in
// position order (grouped by embedding_sort.cu). The checked gather is in index_check.cu.
// Reference: native/cpu/embedding.cc.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

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

}  // namespace

void cudaEmbeddingBackward(int dev, int dtype, const int64_t* order, const int64_t* start, const void* g, int64_t V,
                           int64_t D, void* dw, bool add) {
  if (V * D == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "embedding backward",
              MT_LAUNCH(scatterSum<T>, cu::blocksFor(V * D), cu::kThreads, 0, s, order, start, static_cast<const T*>(g), V, D,
                        static_cast<T*>(dw), add));
  cu::checkLaunch("embeddingBackward");
}

}  // namespace mt
