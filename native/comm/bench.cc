// The peer that bench/comm.ts compares collectives against: memcpy bandwidth on this machine,
// measured in the same run, with as many threads as the machine has cores.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
#include "util/check.h"

namespace mt::comm {

// Seconds per copy of `bytes` (split over `threads` threads, each copying its part `iters`
// times in a row, so thread start-up is amortized), after one untimed warm-up copy.
double benchMemcpy(size_t bytes, int threads, int iters) {
  MT_CHECK(threads >= 1 && iters >= 1, "benchMemcpy: threads and iters must be >= 1");
  bytes = std::max<size_t>(bytes / 64 * 64, 64);
  size_t alloc = (bytes + 4095) / 4096 * 4096;
  char* src = static_cast<char*>(std::aligned_alloc(4096, alloc));
  char* dst = static_cast<char*>(std::aligned_alloc(4096, alloc));
  MT_CHECK(src && dst, "benchMemcpy: out of memory");
  std::memset(src, 1, bytes);
  std::memset(dst, 0, bytes);  // first touch outside the timing
  size_t part = (bytes / threads + 63) / 64 * 64;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int k = 0; k < threads; k++) {
    size_t a = std::min(bytes, part * k), b = std::min(bytes, part * (k + 1));
    ts.emplace_back([=] {
      for (int it = 0; it < iters; it++) {
        std::memcpy(dst + a, src + a, b - a);
        asm volatile("" ::: "memory");
      }
    });
  }
  for (auto& t : ts) t.join();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
  std::free(src);
  std::free(dst);
  return s;
}

}  // namespace mt::comm
