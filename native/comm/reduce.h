// Element-wise reduction of n same-length inputs into one or two outputs, in blocks that stay
// in L1: every input is loaded once and 16-bit floats accumulate in float, rounding once.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include "comm/layout.h"
#include "tensor/dtype.h"

namespace mt::comm {

template <typename C, RedOp OP>
inline C combine(C a, C b) {
  if constexpr (OP == RedOp::Max) return a > b ? a : b;
  else if constexpr (OP == RedOp::Min) return a < b ? a : b;
  else return a + b;
}

template <typename T, RedOp OP>
void reduceBlocks(T* out, T* out2, const T* const* src, int n, int64_t count, double scale) {
  using C = typename Compute<T>::type;
  constexpr int64_t B = 512;
  alignas(64) C acc[B];
  const C s = C(scale);
  for (int64_t i0 = 0; i0 < count; i0 += B) {
    const int64_t m = std::min(B, count - i0);
    const T* s0 = src[0] + i0;
    for (int64_t j = 0; j < m; j++) acc[j] = load(s0 + j);
    for (int p = 1; p < n; p++) {
      const T* sp = src[p] + i0;
      for (int64_t j = 0; j < m; j++) acc[j] = combine<C, OP>(acc[j], load(sp + j));
    }
    if (OP == RedOp::Avg) for (int64_t j = 0; j < m; j++) acc[j] = acc[j] * s;
    for (int64_t j = 0; j < m; j++) store(out + i0 + j, acc[j]);
    if (out2) for (int64_t j = 0; j < m; j++) store(out2 + i0 + j, acc[j]);
  }
}

// out[i] (and out2[i] unless null) = op over p of src[p][i].
inline void reduceInto(DType dt, RedOp op, void* out, void* out2, const void* const* src, int n,
                       int64_t count, double scale) {
  if (count <= 0) return;
  MT_DISPATCH_ALL(dt, {
    auto o = static_cast<T*>(out);
    auto o2 = static_cast<T*>(out2);
    auto s = reinterpret_cast<const T* const*>(src);
    switch (op) {
      case RedOp::Sum: reduceBlocks<T, RedOp::Sum>(o, o2, s, n, count, scale); break;
      case RedOp::Avg: reduceBlocks<T, RedOp::Avg>(o, o2, s, n, count, scale); break;
      case RedOp::Max: reduceBlocks<T, RedOp::Max>(o, o2, s, n, count, scale); break;
      case RedOp::Min: reduceBlocks<T, RedOp::Min>(o, o2, s, n, count, scale); break;
    }
  });
}

}  // namespace mt::comm
