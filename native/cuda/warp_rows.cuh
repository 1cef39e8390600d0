// Row kernels (layernorm.cu, softmax.cu) give each row of up to kWarpCols columns one warp
// (kThreads / 32 rows per block), so their reductions are warp shuffles with no block barriers,
// and each wider row one block. One row body serves both, written against a team: who shares the
// row's column loop and its reductions.
#pragma once
#include <string>
#include "cuda/common.cuh"

namespace mt {
namespace cu {

constexpr int64_t kWarpCols = 4096;
constexpr int kRowsPerBlock = kThreads / 32;

// This thread's row and lane; `live` is false past the last row (uniform across the warp, so a
// warp that returns on it leaves no lane behind at a shuffle).
struct WarpRow {
  int64_t r;
  int lane;
  bool live;
};
__device__ __forceinline__ WarpRow warpRow(int64_t rows) {
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  return {r, int(threadIdx.x % 32), r < rows};
}

__device__ __forceinline__ double warpSum(double v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The largest value; NaN wins.
__device__ __forceinline__ double warpMax(double v) {
  for (int o = 16; o > 0; o /= 2) {
    const double u = __shfl_xor_sync(0xffffffffu, v, o);
    v = (u > v || u != u) ? u : v;
  }
  return v;
}

// A whole block on one row; `buf` is kThreads doubles of shared memory.
struct BlockTeam {
  static constexpr int kStride = kThreads;
  double* buf;
  // This thread's first column, read where used (as the block kernels always have: keeping it in
  // a register instead changes their code).
  __device__ __forceinline__ unsigned first() const { return threadIdx.x; }
  __device__ __forceinline__ double sum(double v) const { return blockReduce<false>(v, buf); }
  __device__ __forceinline__ double max(double v) const { return blockReduce<true>(v, buf); }
};

// One warp on one row.
struct WarpTeam {
  static constexpr int kStride = 32;
  int lane;
  __device__ __forceinline__ int first() const { return lane; }
  __device__ __forceinline__ double sum(double v) const { return warpSum(v); }
  __device__ __forceinline__ double max(double v) const { return warpMax(v); }
};

inline unsigned warpRowBlocks(int64_t rows) { return unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock); }

// Block-per-row kernels put the row in blockIdx.x, warp-per-row ones use warpRowBlocks: both need rows < 2^31.
inline void checkRows(const char* op, int64_t rows) {
  if (rows > (int64_t(1) << 31) - 1) fail(std::string(op) + ": more than 2^31 rows");
}

}  // namespace cu
}  // namespace mt
