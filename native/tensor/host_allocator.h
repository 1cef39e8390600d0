// CPU memory for storages. Large blocks are cached after free and reused: a fresh block pays
// first-touch page faults (measured 1.6 GB/s here, against 10 GB/s writing reused memory),
// and a training step frees and re-allocates the same sizes every iteration.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mt {

struct HostBlock {
  void* ptr;
  size_t capacity;  // what was really allocated; hand it back to hostFree
};

HostBlock hostAlloc(size_t bytes);
void hostFree(HostBlock b);

struct HostCacheStats {
  int64_t cachedBytes, hits, misses, limit;
};
HostCacheStats hostCacheStats();
// Frees every cached block.
void hostEmptyCache();
// The most bytes kept cached; MESHTRAIN_CPU_CACHE_BYTES sets it at start-up (default 4 GiB).
void hostSetCacheLimit(int64_t bytes);

}  // namespace mt
