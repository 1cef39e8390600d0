// Page-locked host memory for staging device tensors (collectives over host transports, ZeRO's
// CPU/NVMe offload). Blocks come from cudaHostAlloc and are cached for reuse, since pinning is
// slow (a page-table walk per call); they are storages on a host accounting device ('cpu' or the
// 'cpu-offload' pool) with the caller's tag. CUDA builds with a device only: otherwise
// pinnedAlloc returns -1 and callers use ordinary memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include "tensor/storage.h"

namespace mt {

// A pinned storage of `bytes` accounted under (`tag`, `accountDevice`: 0 or kCpuOffloadPool), or
// -1 when pinned memory is not available here (no CUDA build, no device, or cudaHostAlloc failed).
int64_t pinnedAlloc(size_t bytes, Tag tag, int accountDevice, bool zero);

struct PinnedPoolStats {
  int64_t cachedBytes = 0, reservedBytes = 0, hits = 0, misses = 0;
};
PinnedPoolStats pinnedPoolStats();
// Frees every cached block (after the copies still reading or writing them finish).
void pinnedEmptyCache();

// Pinned storage `id` is used by work queued so far on cuda:`dev`'s compute stream (a copy into it
// whose reader went away, read_later.cc): once freed, its block is not handed out again before
// that work finishes. Nothing waits here. Not pinned: nothing to do.
void pinnedGuard(int64_t id, int dev);

// Copies between a device storage and a host storage (pinned or not) on the device's
// communication stream, ordered after the compute stream's work. To the host: returns once the
// bytes are there. To the device: returns once queued; the compute stream waits for the copy,
// and a pinned source block is not handed out again before the copy has read it.
void stageCopy(int64_t srcId, int64_t srcByteOff, int64_t dstId, int64_t dstByteOff, int64_t bytes);

}  // namespace mt
