// The embedding backward without the host: positions are grouped by id on the device by a
// stable radix sort of (id, position) pairs (CUB), bucket starts found by binary search, then
// embedding.cu's scatter sums each id's rows in position order, exactly as the CPU does.
// The emulated device (MESHTRAIN_CUDA_EMU, no CUB) groups them with a one-thread counting sort.
#include <algorithm>
#include "cuda/common.cuh"
#include "cuda/index_check.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#ifndef MESHTRAIN_CUDA_EMU
#include <cub/device/device_radix_sort.cuh>
#endif

namespace mt {
namespace {

// Sort keys: the id, or V for an out-of-range one (its bucket is never summed); values: positions.
template <typename I>
__global__ void makePairs(const I* ids, int64_t n, int64_t V, uint32_t* keys, int64_t* pos) {
  MT_CU_LOOP(i, n) {
    const int64_t v = int64_t(ids[i]);
    keys[i] = uint32_t(v >= 0 && v < V ? v : V);
    pos[i] = i;
  }
}

// start[v] = the first sorted position whose key is >= v, for v in [0, V].
__global__ void bucketStarts(const uint32_t* sorted, int64_t n, int64_t V, int64_t* start) {
  MT_CU_LOOP(v, V + 1) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (int64_t(sorted[mid]) < v) lo = mid + 1;
      else hi = mid;
    }
    start[v] = lo;
  }
}

#ifdef MESHTRAIN_CUDA_EMU
// Stable counting sort in one thread (the emulator only): keysOut/posOut as the radix sort's.
__global__ void countingSort(const uint32_t* keys, const int64_t* pos, int64_t n, int64_t V, uint32_t* keysOut,
                             int64_t* posOut, int64_t* fill) {
  for (int64_t v = 0; v <= V; v++) fill[v] = 0;
  for (int64_t i = 0; i < n; i++) fill[keys[i]]++;
  int64_t at = 0;
  for (int64_t v = 0; v <= V; v++) {
    const int64_t c = fill[v];
    fill[v] = at;
    at += c;
  }
  for (int64_t i = 0; i < n; i++) {
    const int64_t to = fill[keys[i]]++;
    keysOut[to] = keys[i];
    posOut[to] = pos[i];
  }
}
#endif

int endBit(int64_t V) {
  int b = 1;
  while (b < 32 && (int64_t(1) << b) <= V) b++;
  return b;  // keys are in [0, V]
}

// Byte layout of the scratch: keys, sorted keys, positions, sorted positions, starts, sort temp.
struct Layout {
  size_t keys, keysOut, pos, posOut, start, temp, tempBytes, total;
};

size_t up(size_t x) { return (x + 255) / 256 * 256; }

Layout layoutOf(int dev, int64_t n, int64_t V) {
  Layout l{};
  l.keys = 0;
  l.keysOut = up(l.keys + size_t(n) * 4);
  l.pos = up(l.keysOut + size_t(n) * 4);
  l.posOut = up(l.pos + size_t(n) * 8);
  l.start = up(l.posOut + size_t(n) * 8);
  l.temp = up(l.start + size_t(V + 1) * 8);
#ifdef MESHTRAIN_CUDA_EMU
  (void)dev;
  l.tempBytes = size_t(V + 1) * 8;  // the counting sort's fill counters
#else
  cudaUseDevice(dev);
  size_t bytes = 0;
  cudaCheck(cub::DeviceRadixSort::SortPairs(nullptr, bytes, static_cast<const uint32_t*>(nullptr),
                                            static_cast<uint32_t*>(nullptr), static_cast<const int64_t*>(nullptr),
                                            static_cast<int64_t*>(nullptr), int(n), 0, endBit(V), computeStream(dev)),
            "cub::DeviceRadixSort::SortPairs (size query)");
  l.tempBytes = bytes;
#endif
  l.total = l.temp + std::max<size_t>(l.tempBytes, 1);
  return l;
}

void checkSizes(int64_t n, int64_t V) {
  if (n > (int64_t(1) << 31) - 1) cu::fail("embedding backward: more than 2^31 - 1 ids");
  if (V >= (int64_t(1) << 31)) cu::fail("embedding backward: more than 2^31 - 1 rows");
}

}  // namespace

int64_t cudaEmbeddingScatterScratch(int dev, int64_t n, int64_t V) {
  checkSizes(n, V);
  return int64_t(layoutOf(dev, n, V).total);
}

void cudaEmbeddingScatter(int dev, int dtype, int idDtype, const void* ids, int64_t n, const void* g, int64_t V,
                          int64_t D, void* dw, void* scratch, int64_t scratchBytes, bool add) {
  checkSizes(n, V);
  if (V * D == 0) return;
  const Layout l = layoutOf(dev, n, V);
  if (scratchBytes < int64_t(l.total)) cu::fail("embedding backward: scratch too small");
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  auto* base = static_cast<unsigned char*>(scratch);
  auto* keys = reinterpret_cast<uint32_t*>(base + l.keys);
  auto* keysOut = reinterpret_cast<uint32_t*>(base + l.keysOut);
  auto* pos = reinterpret_cast<int64_t*>(base + l.pos);
  auto* posOut = reinterpret_cast<int64_t*>(base + l.posOut);
  auto* start = reinterpret_cast<int64_t*>(base + l.start);
  if (n > 0) {
    if (idDtype == cu::I32) {
      auto k = makePairs<int32_t>;
      MT_LAUNCH(k, cu::blocksFor(n), cu::kThreads, 0, s, static_cast<const int32_t*>(ids), n, V, keys, pos);
    } else if (idDtype == cu::I64) {
      auto k = makePairs<int64_t>;
      MT_LAUNCH(k, cu::blocksFor(n), cu::kThreads, 0, s, static_cast<const int64_t*>(ids), n, V, keys, pos);
    } else {
      cu::fail("embedding backward: indices must be i32 or i64");
    }
    cu::checkLaunch("makePairs");
#ifdef MESHTRAIN_CUDA_EMU
    MT_LAUNCH(countingSort, 1, 1, 0, s, keys, pos, n, V, keysOut, posOut, reinterpret_cast<int64_t*>(base + l.temp));
    cu::checkLaunch("countingSort");
#else
    size_t bytes = l.tempBytes;
    MT_CENSUS_CALL("library", "cub::DeviceRadixSort::SortPairs", n * 24);
    cudaCheck(cub::DeviceRadixSort::SortPairs(base + l.temp, bytes, keys, keysOut, pos, posOut, int(n), 0, endBit(V), s),
              "cub::DeviceRadixSort::SortPairs");
    MT_CENSUS_DONE(s);
#endif
  }
  MT_LAUNCH(bucketStarts, cu::blocksFor(V + 1), cu::kThreads, 0, s, keysOut, n, V, start);
  cu::checkLaunch("bucketStarts");
  cudaEmbeddingBackward(dev, dtype, posOut, start, g, V, D, dw, add);
}

}  // namespace mt
