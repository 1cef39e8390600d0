// Embedding gather and its backward, a scatter-add made deterministic by summing each id's
// positions in position order (the order the host grouped them in). Reference:
// native/cpu/embedding.cc.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace mt {
namespace {

template <typename T, typename I>
__global__ void gather(const I* ids, int64_t n, const T* w, int64_t D, T* out) {
  MT_CU_LOOP(i, n * D) {
    int64_t row = i / D, j = i % D;
    out[i] = w[int64_t(ids[row]) * D + j];
  }
}

template <typename T>
__global__ void scatterSum(const int64_t* order, const int64_t* start, const T* g, int64_t V, int64_t D, T* dw) {
  using C = typename cu::Acc<T>::type;
  MT_CU_LOOP(i, V * D) {
    int64_t v = i / D, j = i % D;
    C acc = C(0);
    for (int64_t k = start[v]; k < start[v + 1]; k++) acc += cu::ld(g + order[k] * D + j);
    cu::st(dw + i, acc);
  }
}

}  // namespace

void cudaEmbeddingForward(int dev, int dtype, int idDtype, const void* ids, int64_t n, const void* w, int64_t D,
                          void* out) {
  if (n * D == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "embedding", {
    auto gather32 = gather<T, int32_t>;
    auto gather64 = gather<T, int64_t>;
    if (idDtype == cu::I32)
      MT_LAUNCH(gather32, cu::blocksFor(n * D), cu::kThreads, 0, s, static_cast<const int32_t*>(ids), n,
                static_cast<const T*>(w), D, static_cast<T*>(out));
    else if (idDtype == cu::I64)
      MT_LAUNCH(gather64, cu::blocksFor(n * D), cu::kThreads, 0, s, static_cast<const int64_t*>(ids), n,
                static_cast<const T*>(w), D, static_cast<T*>(out));
    else
      cu::fail("embedding: indices must be i32 or i64");
  });
  cu::checkLaunch("embeddingForward");
}

void cudaEmbeddingBackward(int dev, int dtype, const int64_t* order, const int64_t* start, const void* g, int64_t V,
                           int64_t D, void* dw) {
  if (V * D == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "embedding backward",
              MT_LAUNCH(scatterSum<T>, cu::blocksFor(V * D), cu::kThreads, 0, s, order, start, static_cast<const T*>(g), V, D,
                        static_cast<T*>(dw)));
  cu::checkLaunch("embeddingBackward");
}

}  // namespace mt
