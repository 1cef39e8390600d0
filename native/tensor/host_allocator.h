// CPU memory for storages, 64-byte aligned (2 MiB from 2 MiB up). Freed blocks are cached by size
// class and reused, since a training step frees and re-allocates the same sizes every iteration:
// a fresh large block pays first-touch page faults (measured 1.6 GB/s here, against 10 GB/s
// writing reused memory), a small one glibc's aligned_alloc + free (40-100 ns here with other
// threads alive, against 13 ns for a hit and its free). Below 256 KiB each class keeps a bounded
// last-in-first-out list.
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

// Bytes held for reuse, allocations served from the cache and not, the most bytes it keeps.
struct HostCacheStats {
  int64_t cachedBytes, hits, misses, limit;
};
HostCacheStats hostCacheStats();
// Frees every cached block.
void hostEmptyCache();
// The most bytes kept cached; MESHTRAIN_CPU_CACHE_BYTES sets it at start-up (default 4 GiB).
void hostSetCacheLimit(int64_t bytes);

}  // namespace mt
