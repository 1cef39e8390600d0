// bf16 and f16 for the emulated device (test tool). Conversions round to nearest even as the
// device's cvt.rn does; a NaN becomes the canonical NaN 0x7fff, as on the device.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace mt {
namespace emu {

inline float bitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline uint16_t floatToBf16Bits(float f) {
  uint32_t u = floatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
// double -> float rounding to odd: a second rounding to a format at least two bits narrower
// (bf16) then equals one direct rounding of the double.
inline float roundToOddFloat(double d) {
  float f = float(d);
  if (std::isnan(d) || double(f) == d) return f;
  if (std::fabs(double(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
  return bitsToFloat(floatBits(f) | 1u);
}
inline uint16_t doubleToBf16Bits(double d) { return floatToBf16Bits(roundToOddFloat(d)); }
inline uint16_t floatToF16Bits(float f) {
  if (std::isnan(f)) return 0x7fff;
  _Float16 h = static_cast<_Float16>(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
inline uint16_t doubleToF16Bits(double d) {
  if (std::isnan(d)) return 0x7fff;
  _Float16 h = static_cast<_Float16>(d);  // one rounding, as __double2half
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
inline float f16BitsToFloat(uint16_t b) {
  _Float16 h;
  std::memcpy(&h, &b, 2);
  return float(h);
}

}  // namespace emu
}  // namespace mt

struct __nv_bfloat16_raw {
  unsigned short x;
};
struct __half_raw {
  unsigned short x;
};

struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
  __nv_bfloat16(float f) : __x(::mt::emu::floatToBf16Bits(f)) {}
  __nv_bfloat16(double d) : __x(::mt::emu::doubleToBf16Bits(d)) {}
  __nv_bfloat16(int v) : __x(::mt::emu::doubleToBf16Bits(v)) {}
  __nv_bfloat16(long long v) : __x(::mt::emu::doubleToBf16Bits(double(v))) {}
  __nv_bfloat16(long v) : __x(::mt::emu::doubleToBf16Bits(double(v))) {}
  __nv_bfloat16(unsigned v) : __x(::mt::emu::doubleToBf16Bits(v)) {}
  operator float() const { return ::mt::emu::bitsToFloat(uint32_t(__x) << 16); }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
};

struct __half {
  unsigned short __x;
  __half() = default;
  __half(__half_raw r) : __x(r.x) {}
  __half(float f) : __x(::mt::emu::floatToF16Bits(f)) {}
  __half(double d) : __x(::mt::emu::doubleToF16Bits(d)) {}
  __half(int v) : __x(::mt::emu::doubleToF16Bits(v)) {}
  __half(long long v) : __x(::mt::emu::doubleToF16Bits(double(v))) {}
  __half(long v) : __x(::mt::emu::doubleToF16Bits(double(v))) {}
  __half(unsigned v) : __x(::mt::emu::doubleToF16Bits(v)) {}
  operator float() const { return ::mt::emu::f16BitsToFloat(__x); }
  operator __half_raw() const { return __half_raw{__x}; }
};
using half = __half;
using nv_bfloat16 = __nv_bfloat16;

inline float __bfloat162float(__nv_bfloat16 h) { return float(h); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __double2bfloat16(double d) { return __nv_bfloat16(d); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short b) { return __nv_bfloat16_raw{b}; }
inline float __half2float(__half h) { return float(h); }
inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline __half __double2half(double d) { return __half(d); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short b) { return __half_raw{b}; }

// No operators: bf16/f16 arithmetic converts to float (the built-in operators) and rounds once on
// assignment, which matches the device's native ops except where float already rounded.
