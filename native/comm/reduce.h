// Element-wise reduction of n same-length inputs into one or two outputs, in blocks that stay
// in L1: every input is loaded once and 16-bit floats accumulate in float, rounding once.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include "comm/layout.h"
#include "tensor/dtype.h"

namespace mt::comm {

template <typename C, RedOp OP>
inline C combine(C a, C b) {
  if constexpr (OP == RedOp::Max) return a > b ? a : b;
  else if constexpr (OP == RedOp::Min) return a < b ? a : b;
  else return a + b;
}

// Two native-typed inputs (the common 2-rank case): one combining pass per block into a local
// buffer (outputs may alias inputs, which would keep the compiler from vectorizing a direct loop).
template <typename T, RedOp OP>
void reduceTwo(T* const* outs, int nOut, const T* a, const T* b, int64_t count, T scale) {
  constexpr int64_t B = 256;
  alignas(64) T v[B];
  for (int64_t i0 = 0; i0 < count; i0 += B) {
    const int64_t m = std::min(B, count - i0);
    const T* x = a + i0;
    const T* y = b + i0;
    for (int64_t j = 0; j < m; j++) v[j] = combine<T, OP>(x[j], y[j]);
    if (OP == RedOp::Avg) for (int64_t j = 0; j < m; j++) v[j] = v[j] * scale;
    for (int o = 0; o < nOut; o++) std::memcpy(outs[o] + i0, v, size_t(m) * sizeof(T));
  }
}

template <typename T, RedOp OP>
void reduceBlocks(T* const* outs, int nOut, const T* const* src, int n, int64_t count, double scale) {
  using C = typename Compute<T>::type;
  if constexpr (std::is_same_v<C, T>) {
    if (n == 2) return reduceTwo<T, OP>(outs, nOut, src[0], src[1], count, T(scale));
  }
  constexpr int64_t B = 512;
  alignas(64) C acc[B];
  const C s = C(scale);
  for (int64_t i0 = 0; i0 < count; i0 += B) {
    const int64_t m = std::min(B, count - i0);
    const T* s0 = src[0] + i0;
    if (n == 1) {
      for (int64_t j = 0; j < m; j++) acc[j] = load(s0 + j);
    } else {
      const T* s1 = src[1] + i0;
      for (int64_t j = 0; j < m; j++) acc[j] = combine<C, OP>(load(s0 + j), load(s1 + j));
    }
    for (int p = 2; p < n; p++) {
      const T* sp = src[p] + i0;
      for (int64_t j = 0; j < m; j++) acc[j] = combine<C, OP>(acc[j], load(sp + j));
    }
    if (OP == RedOp::Avg) for (int64_t j = 0; j < m; j++) acc[j] = acc[j] * s;
    if constexpr (std::is_same_v<C, T>) {
      for (int o = 0; o < nOut; o++) std::memcpy(outs[o] + i0, acc, size_t(m) * sizeof(T));
    } else {
      T* first = outs[0] + i0;
      for (int64_t j = 0; j < m; j++) store(first + j, acc[j]);
      for (int o = 1; o < nOut; o++) std::memcpy(outs[o] + i0, first, size_t(m) * sizeof(T));
    }
  }
}

// outs[o][i] = op over p of src[p][i], for every output o (written once per block, so an
// output may alias an input: each block is read completely before it is written).
inline void reduceInto(DType dt, RedOp op, void* const* outs, int nOut, const void* const* src, int n,
                       int64_t count, double scale) {
  if (count <= 0) return;
  MT_DISPATCH_ALL(dt, {
    auto o = reinterpret_cast<T* const*>(outs);
    auto s = reinterpret_cast<const T* const*>(src);
    switch (op) {
      case RedOp::Sum: reduceBlocks<T, RedOp::Sum>(o, nOut, s, n, count, scale); break;
      case RedOp::Avg: reduceBlocks<T, RedOp::Avg>(o, nOut, s, n, count, scale); break;
      case RedOp::Max: reduceBlocks<T, RedOp::Max>(o, nOut, s, n, count, scale); break;
      case RedOp::Min: reduceBlocks<T, RedOp::Min>(o, nOut, s, n, count, scale); break;
    }
  });
}

inline void reduceInto(DType dt, RedOp op, void* out, void* out2, const void* const* src, int n,
                       int64_t count, double scale) {
  void* outs[2] = {out, out2};
  reduceInto(dt, op, outs, out2 ? 2 : 1, src, n, count, scale);
}

}  // namespace mt::comm
