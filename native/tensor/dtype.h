// Dtype codes shared with src/tensor/dtype.ts, and the 16-bit float conversions.
#pragma once
#include <cstdint>
#include <cstring>
#include <cmath>
#include <type_traits>
#include "util/check.h"

namespace mt {

enum class DType : int { F32 = 0, F64 = 1, BF16 = 2, F16 = 3, I32 = 4, I64 = 5 };

inline size_t itemsize(DType d) {
  switch (d) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
  }
  return 0;
}

inline DType toDType(int code) {
  MT_CHECK(code >= 0 && code <= 5, "unknown dtype code ", code);
  return static_cast<DType>(code);
}

struct bf16 { uint16_t bits; };
struct f16 { uint16_t bits; };

inline float bf16ToFloat(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even, as PyTorch and oneDNN do; NaN stays NaN.
inline uint16_t floatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float f16ToFloat(uint16_t h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}
inline uint16_t floatToF16(float f) {
  _Float16 h = static_cast<_Float16>(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}

// Load/store with the compute type: 16-bit floats compute in float.
template <typename T> struct Compute { using type = T; };
template <> struct Compute<bf16> { using type = float; };
template <> struct Compute<f16> { using type = float; };

template <typename T> inline typename Compute<T>::type load(const T* p) { return *p; }
template <> inline float load<bf16>(const bf16* p) { return bf16ToFloat(p->bits); }
template <> inline float load<f16>(const f16* p) { return f16ToFloat(p->bits); }
template <typename T, typename V>
inline void store(T* p, V v) {
  if constexpr (std::is_same_v<T, bf16>) p->bits = floatToBf16(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, f16>) p->bits = floatToF16(static_cast<float>(v));
  else *p = static_cast<T>(v);
}

}  // namespace mt

// Calls BODY with `T` bound to the C++ type of dtype D. No #pragma inside BODY: call a template.
#define MT_DISPATCH_ALL(D, ...)                                    \
  switch (D) {                                                     \
    case ::mt::DType::F32: { using T = float; __VA_ARGS__; break; }  \
    case ::mt::DType::F64: { using T = double; __VA_ARGS__; break; } \
    case ::mt::DType::BF16: { using T = ::mt::bf16; __VA_ARGS__; break; } \
    case ::mt::DType::F16: { using T = ::mt::f16; __VA_ARGS__; break; } \
    case ::mt::DType::I32: { using T = int32_t; __VA_ARGS__; break; } \
    case ::mt::DType::I64: { using T = int64_t; __VA_ARGS__; break; } \
  }

#define MT_DISPATCH_FLOAT(D, OP, ...)                              \
  switch (D) {                                                     \
    case ::mt::DType::F32: { using T = float; __VA_ARGS__; break; }  \
    case ::mt::DType::F64: { using T = double; __VA_ARGS__; break; } \
    case ::mt::DType::BF16: { using T = ::mt::bf16; __VA_ARGS__; break; } \
    case ::mt::DType::F16: { using T = ::mt::f16; __VA_ARGS__; break; } \
    default: throw ::mt::Error(::mt::cat(OP, ": needs a floating-point dtype")); \
  }
