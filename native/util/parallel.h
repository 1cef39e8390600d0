// A parallel loop that stays serial for small work: entering an OpenMP region costs ~0.4 µs
// even when its `if` clause is false, which would dominate tiny ops.
#pragma once
#include <omp.h>
#include <algorithm>
#include <cstdint>

namespace mt {

// Runs f(i) for i in [0, n); in parallel only when n * costPerItem >= 32768 (about 10 µs).
template <typename F>
inline void parallelFor(int64_t n, int64_t costPerItem, F&& f) {
  if (n < 2 || n * costPerItem < 32768 || omp_get_max_threads() == 1) {
    for (int64_t i = 0; i < n; i++) f(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) f(i);
}

// Runs f(row, begin, end) over `outer` rows of `inner` items each, a row split into pieces of 4096
// items when longer: row-parallel loops would otherwise run one long row (a flat range, or a few
// rows) on one thread whatever its length.
template <typename F>
inline void parallelRows(int64_t outer, int64_t inner, F&& f) {
  constexpr int64_t kPiece = 4096;
  const int64_t pieces = inner > kPiece ? (inner + kPiece - 1) / kPiece : 1;
  const int64_t len = pieces > 1 ? kPiece : inner;
  parallelFor(outer * pieces, len, [&](int64_t t) {
    const int64_t begin = (t % pieces) * len;
    f(t / pieces, begin, std::min(inner, begin + len));
  });
}

}  // namespace mt
