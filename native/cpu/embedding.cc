// Embedding lookup (rows of a [V, D] table gathered by integer ids) and its backward, a
// scatter-add made race-free and deterministic by grouping positions per id first.
#include <cstring>
#include <vector>
#include "cpu/indices.h"
#include "tensor/storage.h"
#include "util/args.h"
#include "util/parallel.h"

namespace mt {
namespace {

template <typename T, typename I>
void embeddingForwardKernel(const I* ids, int64_t n, const T* w, int64_t D, T* out) {
  parallelFor(n, D, [&](int64_t i) {
    std::memcpy(out + i * D, w + int64_t(ids[i]) * D, size_t(D) * sizeof(T));
  });
}

// dw[v] = sum of g[i] over positions i with ids[i] == v, summed in position order.
template <typename T, typename I>
void embeddingBackwardKernel(const I* ids, int64_t n, const T* g, int64_t V, int64_t D, T* dw, bool add) {
  using C = typename Compute<T>::type;
  // Positions grouped by id (counting sort): start[v] .. start[v + 1] in `order`.
  std::vector<int64_t> start(static_cast<size_t>(V) + 1, 0), order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) start[size_t(ids[i]) + 1]++;
  for (int64_t v = 0; v < V; v++) start[v + 1] += start[v];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; i++) order[size_t(fill[size_t(ids[i])]++)] = i;
#pragma omp parallel if (V * D > 32768 && V > 1)
  {
    std::vector<C> acc(static_cast<size_t>(D));
#pragma omp for schedule(dynamic, 16)
    for (int64_t v = 0; v < V; v++) {
      T* dst = dw + v * D;
      if (start[v] == start[v + 1]) {
        if (!add) for (int64_t j = 0; j < D; j++) store(dst + j, C(0));
        continue;
      }
      for (int64_t j = 0; j < D; j++) acc[j] = C(0);
      for (int64_t k = start[v]; k < start[v + 1]; k++) {
        const T* src = g + order[k] * D;
        for (int64_t j = 0; j < D; j++) acc[j] += load(src + j);
      }
      // add: onto what dw holds (a parameter's .grad), rounded once.
      for (int64_t j = 0; j < D; j++) store(dst + j, add ? acc[j] + C(load(dst + j)) : acc[j]);
    }
  }
}

// embeddingForward(dtype, idxDtype, idsId, idsOff, n, wId, wOff, V, D, outId, outOff)
// Returns -1, or the position of the first id outside [0, V) (then nothing is written).
Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  DType id = toDType(int(argInt(info, 1)));
  int64_t idsId = argInt(info, 2), idsOff = argInt(info, 3), n = argInt(info, 4),
          wId = argInt(info, 5), wOff = argInt(info, 6), V = argInt(info, 7), D = argInt(info, 8),
          outId = argInt(info, 9), outOff = argInt(info, 10);
  int64_t bad = -1;
  MT_DISPATCH_INDEX(id, "embedding", {
    const I* ids = dataPtr<I>(idsId, idsOff, n);
    bad = firstOutOfRange(ids, n, V, kNoIgnore);
    if (bad < 0 && n > 0 && D > 0) {
      MT_DISPATCH_FLOAT(d, "embedding", {
        embeddingForwardKernel<T, I>(ids, n, dataPtr<T>(wId, wOff, V * D), D,
                                     dataPtr<T>(outId, outOff, n * D));
      });
    }
  });
  return Napi::Number::New(info.Env(), double(bad));
}

// embeddingBackward(dtype, idxDtype, idsId, idsOff, n, gId, gOff, dwId, V, D[, dwOff, add]): dw is
// [V, D] contiguous from dwOff; add: the sums are added to what it holds (a parameter's .grad).
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  DType id = toDType(int(argInt(info, 1)));
  int64_t idsId = argInt(info, 2), idsOff = argInt(info, 3), n = argInt(info, 4),
          gId = argInt(info, 5), gOff = argInt(info, 6), dwId = argInt(info, 7),
          V = argInt(info, 8), D = argInt(info, 9);
  const int64_t dwOff = info.Length() > 10 ? argInt(info, 10) : 0;
  const bool add = info.Length() > 11 && argBool(info, 11);
  MT_CHECK(dwOff >= 0, "embedding backward: negative offset ", dwOff);
  if (V * D == 0) return info.Env().Undefined();
  MT_DISPATCH_INDEX(id, "embedding backward", {
    const I* ids = dataPtr<I>(idsId, idsOff, n);
    MT_CHECK(firstOutOfRange(ids, n, V, kNoIgnore) < 0, "embedding backward: id out of range");
    MT_DISPATCH_FLOAT(d, "embedding backward", {
      embeddingBackwardKernel<T, I>(ids, n, dataPtr<T>(gId, gOff, n * D), V, D,
                                    dataPtr<T>(dwId, dwOff, V * D), add);
    });
  });
  return info.Env().Undefined();
}

}  // namespace

void registerEmbedding(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "embeddingForward", EmbeddingForward);
  MT_EXPORT(exports, "embeddingBackward", EmbeddingBackward);
  exports.Set("embeddingGradInto", Napi::Boolean::New(env, true));  // takes dwOff, add
}

}  // namespace mt
