// Integer index tensors (embedding ids, class targets): i32 or i64, range-checked before use.
#pragma once
#include <cstdint>
#include <limits>
#include "tensor/dtype.h"

namespace mt {

// Never equal to an index of either width: "no ignore value".
constexpr int64_t kNoIgnore = std::numeric_limits<int64_t>::min();

// The position of the first index outside [0, limit) that is not `ignore`, or -1.
template <typename I>
int64_t firstOutOfRange(const I* ids, int64_t n, int64_t limit, int64_t ignore) {
  for (int64_t i = 0; i < n; i++) {
    int64_t v = int64_t(ids[i]);
    if ((v < 0 || v >= limit) && v != ignore) return i;
  }
  return -1;
}

}  // namespace mt

// Calls BODY with `I` bound to the index type of dtype D (i32 or i64).
#define MT_DISPATCH_INDEX(D, OP, ...)                                   \
  switch (D) {                                                          \
    case ::mt::DType::I32: { using I = int32_t; __VA_ARGS__; break; }   \
    case ::mt::DType::I64: { using I = int64_t; __VA_ARGS__; break; }   \
    default: throw ::mt::Error(::mt::cat(OP, ": indices must be i32 or i64")); \
  }
