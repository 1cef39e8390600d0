// The peer that bench/comm.ts compares collectives against: memcpy bandwidth on this machine,
// measured in the same run with the same number of threads as ranks.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
#include "util/check.h"

namespace mt::comm {

// Seconds of the fastest of `iters` copies of `bytes`, split over `threads` threads.
double benchMemcpy(size_t bytes, int threads, int iters) {
  MT_CHECK(threads >= 1 && iters >= 1, "benchMemcpy: threads and iters must be >= 1");
  bytes = std::max<size_t>(bytes / 64 * 64, 64);
  char* src = static_cast<char*>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096));
  char* dst = static_cast<char*>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096));
  MT_CHECK(src && dst, "benchMemcpy: out of memory");
  std::memset(src, 1, bytes);
  std::memset(dst, 0, bytes);  // first touch outside the timing
  double best = 1e30;
  for (int it = 0; it < iters; it++) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    size_t part = (bytes / threads + 63) / 64 * 64;
    for (int k = 0; k < threads; k++) {
      size_t a = std::min(bytes, part * k), b = std::min(bytes, part * (k + 1));
      ts.emplace_back([=] { std::memcpy(dst + a, src + a, b - a); });
    }
    for (auto& t : ts) t.join();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::free(src);
  std::free(dst);
  return best;
}

}  // namespace mt::comm
