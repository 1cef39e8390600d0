// Index arithmetic for strided views shared by the kernels.
#pragma once
#include <cstdint>
#include <vector>

namespace mt {

// How many elements a view spans from its first to its last addressed one (0 when empty), for
// bounds checks against the storage.
inline int64_t stridedSpan(const int64_t* dims, const int64_t* strides, size_t nd) {
  int64_t hi = 0;
  for (size_t k = 0; k < nd; k++) {
    if (dims[k] == 0) return 0;
    hi += (dims[k] - 1) * strides[k];
  }
  return hi + 1;
}

inline int64_t stridedSpan(const std::vector<int64_t>& dims, const std::vector<int64_t>& strides) {
  return stridedSpan(dims.data(), strides.data(), dims.size());
}

// The offsets, under two stride sets, of row `o` of a view whose last dim is the row: the
// outer dims [0, nd-1) are unravelled from o.
inline void rowOffsets(int64_t o, const std::vector<int64_t>& shape, const std::vector<int64_t>& s1,
                       const std::vector<int64_t>& s2, int64_t* off1, int64_t* off2) {
  int64_t a = 0, b = 0;
  for (int k = int(shape.size()) - 2; k >= 0; k--) {
    int64_t i = o % shape[k];
    o /= shape[k];
    a += i * s1[k];
    b += i * s2[k];
  }
  *off1 = a;
  *off2 = b;
}

}  // namespace mt
