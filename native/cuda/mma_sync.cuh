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
// ldsm4 / ldsm4t load such registers from shared memory with ldmatrix. The emulated device
// (native/cuda/emu/) runs the product and the loads as warp collectives: the lanes exchange their
// A and B registers (row addresses), then each computes (reads) its own values.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
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

// Four 8x8 16-bit matrices from shared memory in one instruction (ldmatrix .x4): lanes 8i..8i+7
// pass the addresses of matrix i's rows 0..7 (16 bytes each, 16-byte aligned), and lane l gets
// in r[i] matrix i's (row l/4, cols 2(l%4), 2(l%4)+1): an A or B register as laid out above.
__device__ __forceinline__ void ldsm4(uint32_t (&r)[4], const void* row) {
  const unsigned a = unsigned(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");  // it reads shared memory: keep it after the barrier that published it
}
// The same with each matrix transposed (.trans): lane l gets in r[i] matrix i's (rows 2(l%4),
// 2(l%4)+1; col l/4), e.g. a B fragment of a row-major k x n operand.
__device__ __forceinline__ void ldsm4t(uint32_t (&r)[4], const void* row) {
  const unsigned a = unsigned(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a)
               : "memory");  // it reads shared memory: keep it after the barrier that published it
}

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

// ldsm4 / ldsm4t (above) as warp collectives: the lanes exchange their row addresses, then each
// reads its own elements.
inline void ldsm4Emu(uint32_t (&r)[4], const void* row, bool trans) {
  if (reinterpret_cast<uintptr_t>(row) & 15) emu::kernelFault(std::string(trans ? "ldsm4t" : "ldsm4") + ": a row address is not 16-byte aligned");
  const void* rows[32];
  emu::warpGather(0xffffffffu, &row, int(sizeof row), rows, trans ? "ldsm4t" : "ldsm4");
  const int lane = emu::laneId();
  auto at = [&](int i, int rr, int c) {
    uint16_t v;
    std::memcpy(&v, static_cast<const unsigned char*>(rows[8 * i + rr]) + 2 * c, 2);
    return uint32_t(v);
  };
  for (int i = 0; i < 4; i++) {
    if (trans) r[i] = at(i, 2 * (lane % 4), lane / 4) | (at(i, 2 * (lane % 4) + 1, lane / 4) << 16);
    else r[i] = at(i, lane / 4, 2 * (lane % 4)) | (at(i, lane / 4, 2 * (lane % 4) + 1) << 16);
  }
}
inline void ldsm4(uint32_t (&r)[4], const void* row) { ldsm4Emu(r, row, false); }
inline void ldsm4t(uint32_t (&r)[4], const void* row) { ldsm4Emu(r, row, true); }

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
