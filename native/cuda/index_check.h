// Launchers of the device-side index checks (index_check.cu) and of the embedding work that runs
// without copying indices to the host (embedding_sort.cu). Plain declarations, no CUDA types.
// A flag is one device u64: 0 when every index was in range, else n - (first bad position).
#pragma once
#include <cstdint>

namespace mt {

// Flags indices outside [0, hi) that are not `ignore`; `count` (a device u64, may be null) gets
// the number of indices that are not `ignore`. Both are reset first.
void cudaIndexCheck(int dev, int idDtype, const void* ids, int64_t n, int64_t hi, int64_t ignore, void* flag,
                    void* count);
// out[i, :] = w[ids[i], :] over [V, D] weights; bad ids are flagged and give zero rows.
void cudaEmbeddingGather(int dev, int dtype, int idDtype, const void* ids, int64_t n, const void* w, int64_t V,
                         int64_t D, void* out, void* flag);

// Device scratch bytes for cudaEmbeddingScatter.
int64_t cudaEmbeddingScatterScratch(int dev, int64_t n, int64_t V);
// dw [V, D] = for each id, the rows of g [n, D] at its positions summed in position order (a
// stable device sort groups them): deterministic, no host copy. Out-of-range ids are dropped.
// add: the sums are added to what dw holds (a parameter's .grad), rounded once.
void cudaEmbeddingScatter(int dev, int dtype, int idDtype, const void* ids, int64_t n, const void* g, int64_t V,
                          int64_t D, void* dw, void* scratch, int64_t scratchBytes, bool add = false);

}  // namespace mt
