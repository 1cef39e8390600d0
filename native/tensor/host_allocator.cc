#include "tensor/host_allocator.h"

#include <sys/mman.h>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>
#include "util/spin_lock.h"

namespace mt {
namespace {

constexpr size_t kSmallAlign = 64;
constexpr size_t kSmallBelow = 256 << 10;  // capacities below this live in per-class lists
constexpr size_t kHuge = 2 << 20;

// Size classes: multiples of 64 bytes up to 512, then 1/8 of a power of two apart (at most 12.5%
// slack), so a slightly different size next step still finds its block.
size_t sizeClass(size_t bytes) {
  if (bytes <= 8 * kSmallAlign) return bytes == 0 ? kSmallAlign : (bytes + kSmallAlign - 1) / kSmallAlign * kSmallAlign;
  size_t step = (size_t(1) << (63 - __builtin_clzll(bytes))) / 8;
  return (bytes + step - 1) / step * step;
}

// The list of a class below kSmallBelow: 64..512 are 0..7, then 8 classes per power of two.
constexpr size_t smallIndex(size_t cap) {
  if (cap <= 8 * kSmallAlign) return cap / kSmallAlign - 1;
  int log = 63 - __builtin_clzll(cap);
  return size_t(log - 9) * 8 + ((cap >> (log - 3)) & 7) + 7;
}
constexpr size_t kSmallClasses = smallIndex(kSmallBelow);
static_assert(smallIndex(8 * kSmallAlign) == 7 && smallIndex(9 * kSmallAlign) == 8 && kSmallClasses == 79);

// Most blocks kept per small class: more than a training step holds live of one size (ResNet-101's
// CPU step: no misses after the first), yet a burst of tiny tensors cannot fill the cache.
constexpr size_t kPerClass = 1024;

int64_t limitFromEnv() {
  const char* v = std::getenv("MESHTRAIN_CPU_CACHE_BYTES");
  if (v && *v) {
    char* end = nullptr;
    long long n = std::strtoll(v, &end, 10);
    if (end && *end == '\0' && n >= 0) return n;
  }
  return int64_t(4) << 30;
}

// Called from the main thread, from worker threads and from finalizers; the lock is held for one
// list or map operation, so a spin lock (util/spin_lock.h) is the cheap one.
struct Cache {
  SpinLock mu;
  // Each small class's list, last in first out (the block freed last is the one still in cache).
  // Fixed arrays: a free never allocates (it runs inside freeStorage), and left uninitialized, a
  // list's pages are touched only once its class is used.
  size_t smallCount[kSmallClasses] = {};
  void* small[kSmallClasses][kPerClass];
  std::multimap<size_t, void*> large;  // capacity -> block, for kSmallBelow and up
  int64_t cachedBytes = 0, hits = 0, misses = 0;
  int64_t limit = limitFromEnv();
};

Cache& cache() {
  static Cache c;
  return c;
}

// A cached block of capacity `cap` taken out of the cache, or null. Called with the lock held.
void* take(Cache& c, size_t cap) {
  void* p = nullptr;
  if (cap < kSmallBelow) {
    size_t i = smallIndex(cap);
    if (c.smallCount[i]) p = c.small[i][--c.smallCount[i]];
  } else if (auto it = c.large.find(cap); it != c.large.end()) {
    p = it->second;
    c.large.erase(it);
  }
  return p;
}

// Whether the block was kept (the limit and its class's list have room). Called with the lock held.
bool keep(Cache& c, HostBlock b) {
  if (c.cachedBytes + int64_t(b.capacity) > c.limit) return false;
  if (b.capacity < kSmallBelow) {
    size_t i = smallIndex(b.capacity);
    if (c.smallCount[i] == kPerClass) return false;
    c.small[i][c.smallCount[i]++] = b.ptr;
  } else {
    c.large.emplace(b.capacity, b.ptr);
  }
  c.cachedBytes += int64_t(b.capacity);
  return true;
}

}  // namespace

HostBlock hostAlloc(size_t bytes) {
  size_t cap = sizeClass(bytes);
  Cache& c = cache();
  {
    std::lock_guard<SpinLock> lock(c.mu);
    if (void* p = take(c, cap)) {
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
  Cache& c = cache();
  {
    std::lock_guard<SpinLock> lock(c.mu);
    if (keep(c, b)) return;
  }
  std::free(b.ptr);
}

HostCacheStats hostCacheStats() {
  Cache& c = cache();
  std::lock_guard<SpinLock> lock(c.mu);
  return {c.cachedBytes, c.hits, c.misses, c.limit};
}

void hostEmptyCache() {
  Cache& c = cache();
  std::vector<void*> blocks;
  {
    std::lock_guard<SpinLock> lock(c.mu);
    size_t n = c.large.size();
    for (size_t k : c.smallCount) n += k;
    blocks.reserve(n);  // before anything is taken: a throw leaves the cache as it was
    for (size_t i = 0; i < kSmallClasses; i++) {
      blocks.insert(blocks.end(), c.small[i], c.small[i] + c.smallCount[i]);
      c.smallCount[i] = 0;
    }
    for (auto& [cap, p] : c.large) blocks.push_back(p);
    c.large.clear();
    c.cachedBytes = 0;
  }
  for (void* p : blocks) std::free(p);
}

void hostSetCacheLimit(int64_t bytes) {
  Cache& c = cache();
  {
    std::lock_guard<SpinLock> lock(c.mu);
    c.limit = bytes;
  }
  if (hostCacheStats().cachedBytes > bytes) hostEmptyCache();
}

}  // namespace mt
