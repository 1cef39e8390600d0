// The layer norm backward that reads x and g once (layernorm_onepass.cu), and the fixed-order
// column sums that turn per-block partials into dw, db (also used by layernorm.cu's wide rows).
#pragma once
#include <cuda_runtime.h>
#include <cstdint>
#include <type_traits>

namespace mt {

// Row statistics (mean, 1/std) are f64 for f64 tensors and f32 otherwise.
template <typename T>
using LayerNormStat = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Partial sums (one per block of rows) the one-pass backward writes for this shape, or 0 where it
// does not apply (rows wider than a warp's registers hold: layernorm.cu's kernels take them).
int64_t layerNormOnePassParts(int dtype, int64_t rows, int64_t cols);
// Bytes of one partial element: f64 for f64 tensors, f32 otherwise.
int layerNormOnePassPartBytes(int dtype);

// dx (when not null; with addX added to what dx holds, rounded once) and, when `part` is not null,
// the partials part[p][0][j] = sum of g * xhat and part[p][1][j] = sum of g over block p's rows,
// layerNormOnePassParts(...) of them; on cuda:dev.
void layerNormOnePass(int dev, cudaStream_t s, int dtype, const void* x, const void* w, const void* mean, const void* rstd,
                      const void* g, void* dx, bool addX, int64_t rows, int64_t cols, void* part);

// dw[j] = sum over p of part[p][0][j], db[j] likewise of part[p][1][j], in a fixed order, in
// double, then (addW / addB) added to what dw / db hold, rounded once. `part` is f64 when partF64,
// else f32; dw or db may be null.
void layerNormColumnSums(cudaStream_t s, int dtype, const void* part, bool partF64, int64_t parts, int64_t cols,
                         void* dw, void* db, bool addW, bool addB);

}  // namespace mt
