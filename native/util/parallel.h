// A parallel loop that stays serial for small work: entering an OpenMP region costs ~0.4 µs
// even when its `if` clause is false, which would dominate tiny ops.
#pragma once
#include <omp.h>
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

}  // namespace mt
