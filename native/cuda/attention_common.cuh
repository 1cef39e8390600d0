// What the 16-bit attention kernels share (attention_tc.cu on WMMA; attention_fa2.cu and
// attention_fa2_bwd.cu on mma.sync): a head's base pointer, the NaN-propagating max of the online
// softmax, 16-byte chunks and the test for moving an operand 16 bytes at a time, the bf16/f16
// dispatch, the fa2 kernels' rows-per-warp switches.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include "cuda/attention.h"
#include "cuda/common.cuh"

namespace mt {
namespace attn16 {

__device__ __forceinline__ float maxNan(float a, float b) { return (b > a || b != b) ? b : a; }

// The first element of head bh (= batch index * heads + head) of a strided [B, H, T, D] operand.
template <typename P>
__device__ __forceinline__ P* headOf(P* p, const CudaAttnStrides& s, int64_t bh, int64_t heads) {
  return p + (bh / heads) * s.b + (bh % heads) * s.h;
}

struct alignas(16) Chunk {
  uint32_t w[4];
};

// Whether an operand may move 16 bytes at a time: a 16-byte aligned base, strides multiples of 8.
inline bool vecOk(const void* p, const CudaAttnStrides& s) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0 && s.b % 8 == 0 && s.h % 8 == 0 && s.t % 8 == 0;
}

// Query rows per warp an fa2 kernel is asked for by environment variable `var`: 16 (unset, empty
// or "16") or 32 (two m16 tiles per warp); anything else is an error naming the variable. Read at
// every call, as MESHTRAIN_ATTENTION is, so a test or a benchmark can switch within one process.
inline int rowsPerWarp(const char* var) {
  const char* e = std::getenv(var);
  if (!e || !*e || std::strcmp(e, "16") == 0) return 16;
  if (std::strcmp(e, "32") == 0) return 32;
  cu::fail(std::string(var) + ": unknown rows per warp '" + e + "' (16 or 32)");
  return 16;
}

}  // namespace attn16
}  // namespace mt

// Runs the statements with T the 16-bit element type of dtype code DT (bf16, else f16).
#define MT_ATTN16_TYPES(DT, ...)                              \
  if (DT == cu::BF16) { using T = cu::bf16; __VA_ARGS__; }    \
  else { using T = cu::f16; __VA_ARGS__; }
