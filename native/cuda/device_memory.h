// CUDA device memory for storages on 'cuda:N', behind plain declarations so that storage.cc needs
// no CUDA header. Defined only in builds with CUDA (storage.cc refuses devices otherwise).
// `dev` is the CUDA ordinal N.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mt {

// A block from the caching allocator (capacity >= bytes; give capacity back to cudaFreeBlock).
void* cudaAllocBlock(int dev, size_t bytes, size_t* capacity);
void cudaFreeBlock(int dev, void* ptr, size_t capacity);
// Zeroes n bytes, ordered on the device's compute stream.
void cudaZeroBytes(int dev, void* ptr, size_t n);
// Synchronous copies between host memory and a device block, ordered after the compute stream's
// work (so they see every kernel launched before).
void cudaCopyToHost(int dev, void* dst, const void* src, size_t n);
void cudaCopyFromHost(int dev, void* dst, const void* src, size_t n);
// Device to device (possibly across devices), ordered on the destination's compute stream.
void cudaCopyDevice(int dstDev, void* dst, int srcDev, const void* src, size_t n);

struct DeviceCacheStats {
  // graphBytes: free blocks that CUDA graphs hold (their replays write them; nothing else may).
  int64_t cachedBytes = 0, reservedBytes = 0, hits = 0, misses = 0, graphBytes = 0;
};

// Graph pools (cuda_graph.cc). While a graph is captured on `dev`, its blocks come from pool `pool`
// and go back to it, and blocks allocated before the capture but freed during it are kept by the
// pool too: the graph's replays write all of them, so no eager op may get them. After the capture
// the pool hands out nothing. Releasing the pool (the graph is gone) returns its free blocks to the
// cache; blocks still held by tensors follow when freed.
void cudaPoolCaptureBegin(int dev, int64_t pool);
void cudaPoolCaptureEnd(int dev);
void cudaPoolRelease(int64_t pool);
DeviceCacheStats cudaCacheStats(int dev);
// Returns every cached block of `dev` to cudaFree (after the device finishes its work).
void cudaEmptyCache(int dev);
// Waits for both streams of `dev`; an error of any earlier kernel surfaces here.
void cudaSynchronizeDevice(int dev);
// How many CUDA devices this process sees (0 when none or no driver).
int cudaDeviceCountCached();

}  // namespace mt
