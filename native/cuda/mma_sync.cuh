// Warp-level tensor-core products on PTX mma.sync.aligned.m16n8k16 (bf16/f16 in, f32 accumulate).
// Unlike WMMA's opaque fragments, PTX documents which lane holds which element, so a kernel can
// keep scores, probabilities and outputs in registers and convert between operand roles there
// (flash-attention 2's layout). All 32 lanes of the warp must call mma16816 together.
//
// Fragment layouts (lane l: g = l >> 2, t = l & 3; "cols c, c+1" = two 16-bit values in one
// register, the lower column in the low half):
//   A 16x16 row-major: r0 = (row g, cols 2t, 2t+1), r1 = (row g+8, cols 2t..), r2 = (row g, cols 2t+8..),
//                      r3 = (row g+8, cols 2t+8..)
//   B 16x8 (k x n):    r0 = (k 2t, 2t+1; n g), r1 = (k 2t+8, 2t+9; n g)
//   C 16x8 f32:        c0, c1 = (row g, cols 2t, 2t+1), c2, c3 = (row g+8, cols 2t, 2t+1)
// The emulated device (native/cuda/emu/) runs the product as a warp collective: the lanes
// exchange their A and B registers, then each computes its own four outputs in float.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>
#include "cuda/common.cuh"

namespace mt {
namespace mma {

struct A16 {
  uint32_t r[4];
};
struct B16 {
  uint32_t r[2];
};
struct C16 {
  float c[4];
};

// Two values rounded to nearest even to T (cu::bf16 or cu::f16), `lo` in the low 16 bits.
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  static_assert(std::is_same_v<T, cu::bf16> || std::is_same_v<T, cu::f16>, "pack2: bf16 or f16");
  if constexpr (std::is_same_v<T, cu::bf16>)
    return uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
           (uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
  else
    return uint32_t(__half_as_ushort(__float2half_rn(lo))) | (uint32_t(__half_as_ushort(__float2half_rn(hi))) << 16);
}

#ifndef MESHTRAIN_CUDA_EMU

// d += a·b on the tensor cores (sm_80 and later; this project builds sm_90).
template <typename T>
__device__ __forceinline__ void mma16816(C16& d, const A16& a, const B16& b) {
  static_assert(std::is_same_v<T, cu::bf16> || std::is_same_v<T, cu::f16>, "mma16816: bf16 or f16");
  if constexpr (std::is_same_v<T, cu::bf16>)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d.c[0]), "+f"(d.c[1]), "+f"(d.c[2]), "+f"(d.c[3])
        : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]), "r"(b.r[1]));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d.c[0]), "+f"(d.c[1]), "+f"(d.c[2]), "+f"(d.c[3])
        : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]), "r"(b.r[1]));
}

#else  // the emulated device

namespace detail {
template <typename T>
inline float lowOrHigh(uint32_t r, int k) {
  const uint16_t h = uint16_t((k & 1) ? r >> 16 : r & 0xffffu);
  if constexpr (std::is_same_v<T, cu::bf16>) return emu::bitsToFloat(uint32_t(h) << 16);
  else return emu::f16BitsToFloat(h);
}
}  // namespace detail

// d += a·b: every lane publishes its A and B registers, then computes its own outputs from the
// layouts above. Products of 16-bit values are exact in float; the sum runs in k order (the
// device's adder order and internal precision may differ in the last bits).
template <typename T>
inline void mma16816(C16& d, const A16& a, const B16& b) {
  static_assert(std::is_same_v<T, cu::bf16> || std::is_same_v<T, cu::f16>, "mma16816: bf16 or f16");
  struct Regs {
    uint32_t a[4], b[2];
  } mine, all[32];
  std::memcpy(mine.a, a.r, sizeof mine.a);
  std::memcpy(mine.b, b.r, sizeof mine.b);
  emu::warpGather(0xffffffffu, &mine, int(sizeof mine), all, "mma16816");
  const int lane = emu::laneId(), g = lane >> 2, t = lane & 3;
  for (int i = 0; i < 4; i++) {
    const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
    float s = d.c[i];
    for (int k = 0; k < 16; k++) {
      const int q = (k % 8) / 2;  // the lane-in-quad holding column (A) or row (B) k
      const float x = detail::lowOrHigh<T>(all[(row % 8) * 4 + q].a[(row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k);
      const float y = detail::lowOrHigh<T>(all[col * 4 + q].b[k >= 8 ? 1 : 0], k);
      s += x * y;
    }
    d.c[i] = s;
  }
}

#endif

}  // namespace mma
}  // namespace mt
