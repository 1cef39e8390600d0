#include "tensor/storage.h"

#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>
#include "tensor/host_allocator.h"
#include "util/args.h"
#include "util/stats_object.h"
#ifdef MESHTRAIN_CUDA
#include "cuda/device_memory.h"
#endif

namespace mt {
namespace {

// Chunks never move, so kernels may hold a Storage& while another thread allocates.
constexpr int64_t kChunk = kStorageChunk;
constexpr int64_t kMaxChunks = kMaxStorageChunks;

struct Counter {
  int64_t current = 0;
  int64_t peak = 0;
};

struct Table {
  std::mutex mu;
  std::vector<std::unique_ptr<Storage[]>> chunks;  // owns what detail::storageChunks points to
  std::vector<int64_t> freeIds;
  int64_t next = 1;  // id 0 is never valid, so a zeroed handle is caught; mirrored in detail::storageNextId
  int64_t liveCount = 0;
  Counter counters[kNumTags][kMaxDevices];
  Table() { chunks.reserve(kMaxChunks); }
};

Table& table() {
  static Table t;
  return t;
}

}  // namespace

namespace detail {
Storage* storageChunks[kMaxStorageChunks] = {};
std::atomic<int64_t> storageNextId{1};

void badStorage(int64_t id) {
  MT_CHECK(id > 0 && id < storageNextId.load(std::memory_order_acquire), "invalid storage id ", id);
  throw Error(cat("storage ", id, " was already freed (use after dispose)"));
}
}  // namespace detail

namespace {
int64_t insertStorage(const Storage& entry);
}  // namespace

int64_t allocStorage(size_t bytes, Tag tag, int device, bool zero) {
  int tagI = static_cast<int>(tag);
  MT_CHECK(tagI >= 0 && tagI < kNumTags, "unknown memory tag ", tagI);
  if (isCudaCode(device)) {
#ifdef MESHTRAIN_CUDA
    size_t cap = 0;
    void* p = cudaAllocBlock(device - 1, bytes, &cap);
    if (zero) cudaZeroBytes(device - 1, p, bytes);  // the storage sees `bytes`; the tail is the allocator's
    return insertStorage(Storage{p, bytes, cap, tagI, device, true});
#else
    throw Error(cat("cuda:", device - 1, " is not available: this build has no CUDA (nvcc was not found when it was built)"));
#endif
  }
  MT_CHECK(device == 0 || device == kCpuOffloadPool, "device ", device, " is not available in this build (CPU only)");
  HostBlock block = hostAlloc(bytes);
  if (zero) std::memset(block.ptr, 0, block.capacity);
  return insertStorage(Storage{block.ptr, bytes, block.capacity, tagI, device, true});
}

int64_t adoptStorage(void* ptr, size_t bytes, Tag tag, int device, void (*release)(void*, void*), void* ctx) {
  int tagI = static_cast<int>(tag);
  MT_CHECK(tagI >= 0 && tagI < kNumTags, "unknown memory tag ", tagI);
  return insertStorage(Storage{ptr, bytes, bytes, tagI, device, true, release, ctx});
}

namespace {

int64_t insertStorage(const Storage& entry) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  int64_t id;
  if (!t.freeIds.empty()) {
    id = t.freeIds.back();
    t.freeIds.pop_back();
  } else {
    id = t.next;
    if (id / kChunk >= int64_t(t.chunks.size())) {
      MT_CHECK(int64_t(t.chunks.size()) < kMaxChunks, "too many live storages");
      t.chunks.emplace_back(new Storage[kChunk]);
      detail::storageChunks[t.chunks.size() - 1] = t.chunks.back().get();
    }
    t.next++;
  }
  Storage& s = t.chunks[id / kChunk][id % kChunk];
  s = entry;
  detail::storageNextId.store(t.next, std::memory_order_release);  // after the chunk and the entry
  Counter& c = t.counters[entry.tag][entry.device];
  c.current += int64_t(entry.bytes);
  if (c.current > c.peak) c.peak = c.current;
  t.liveCount++;
  return id;
}

}  // namespace

void accountBytes(Tag tag, int device, int64_t delta) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  Counter& c = t.counters[static_cast<int>(tag)][device];
  c.current += delta;
  if (c.current > c.peak) c.peak = c.current;
}

void freeStorage(int64_t id) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  Storage& s = storageAt(id);
  if (s.release) s.release(s.releaseCtx, s.ptr);
#ifdef MESHTRAIN_CUDA
  else if (isCudaCode(s.device)) cudaFreeBlock(s.device - 1, s.ptr, s.capacity);
#endif
  else hostFree({s.ptr, s.capacity});
  t.counters[s.tag][s.device].current -= int64_t(s.bytes);
  s.live = false;
  s.ptr = nullptr;
  s.release = nullptr;
  s.releaseCtx = nullptr;
  t.freeIds.push_back(id);
  t.liveCount--;
}

namespace {

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  int64_t bytes = argInt(info, 0);
  MT_CHECK(bytes >= 0, "alloc: negative size ", bytes);
  int64_t id = allocStorage(size_t(bytes), static_cast<Tag>(argInt(info, 1)), int(argInt(info, 2)),
                            argBool(info, 3));
  return Napi::Number::New(info.Env(), double(id));
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  freeStorage(argInt(info, 0));
  return info.Env().Undefined();
}

// Copies bytes out into a new ArrayBuffer: JS never holds a pointer into freeable memory.
Napi::Value Read(const Napi::CallbackInfo& info) {
  int64_t id = argInt(info, 0), off = argInt(info, 1), len = argInt(info, 2);
  void* src = anyDevicePtr<uint8_t>(id, off, len);
  auto buf = Napi::ArrayBuffer::New(info.Env(), size_t(len));
#ifdef MESHTRAIN_CUDA
  if (int dev = storageAt(id).device; isCudaCode(dev)) {
    if (len) cudaCopyToHost(dev - 1, buf.Data(), src, size_t(len));
    return buf;
  }
#endif
  if (len) std::memcpy(buf.Data(), src, size_t(len));
  return buf;
}

Napi::Value Write(const Napi::CallbackInfo& info) {
  int64_t id = argInt(info, 0), off = argInt(info, 1);
  MT_CHECK(info[2].IsTypedArray(), "write: source must be a typed array");
  auto src = info[2].As<Napi::TypedArray>();
  size_t len = src.ByteLength();
  void* dst = anyDevicePtr<uint8_t>(id, off, int64_t(len));
  auto* from = static_cast<uint8_t*>(src.ArrayBuffer().Data()) + src.ByteOffset();
#ifdef MESHTRAIN_CUDA
  if (int dev = storageAt(id).device; isCudaCode(dev)) {
    if (len) cudaCopyFromHost(dev - 1, dst, from, len);
    return info.Env().Undefined();
  }
#endif
  if (len) std::memcpy(dst, from, len);
  return info.Env().Undefined();
}

Napi::Value StorageBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(storageAt(argInt(info, 0)).bytes));
}

// Where a storage's memory starts and how much the allocator gave it, as numbers: lets tests check
// alignment and that live blocks never overlap (JS cannot reach the memory through them).
Napi::Value StorageBlock(const Napi::CallbackInfo& info) {
  const Storage& s = storageAt(argInt(info, 0));
  return numbersObject(info.Env(), {{"address", double(reinterpret_cast<uintptr_t>(s.ptr))}, {"capacity", double(s.capacity)}});
}

// Rows of [tag, device, current, peak] for every counter that was ever used.
Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  auto rows = Napi::Array::New(info.Env());
  uint32_t n = 0;
  for (int tag = 0; tag < kNumTags; tag++)
    for (int dev = 0; dev < kMaxDevices; dev++) {
      const Counter& c = t.counters[tag][dev];
      if (c.peak == 0) continue;
      auto row = Napi::Array::New(info.Env(), 4);
      row.Set(0u, tag);
      row.Set(1u, dev);
      row.Set(2u, double(c.current));
      row.Set(3u, double(c.peak));
      rows.Set(n++, row);
    }
  return rows;
}

Napi::Value ResetPeak(const Napi::CallbackInfo& info) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  for (auto& byTag : t.counters)
    for (auto& c : byTag) c.peak = c.current;
  return info.Env().Undefined();
}

// {cachedBytes, hits, misses, limit} of the CPU block cache.
Napi::Value AllocatorStats(const Napi::CallbackInfo& info) {
  HostCacheStats s = hostCacheStats();
  return numbersObject(info.Env(), {{"cachedBytes", double(s.cachedBytes)},
                                    {"hits", double(s.hits)},
                                    {"misses", double(s.misses)},
                                    {"limit", double(s.limit)}});
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  hostEmptyCache();
  return info.Env().Undefined();
}

Napi::Value SetCacheLimit(const Napi::CallbackInfo& info) {
  int64_t n = argInt(info, 0);
  MT_CHECK(n >= 0, "setCacheLimit: the limit must be >= 0 bytes, got ", n);
  hostSetCacheLimit(n);
  return info.Env().Undefined();
}

Napi::Value LiveStorages(const Napi::CallbackInfo& info) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  return Napi::Number::New(info.Env(), double(t.liveCount));
}

}  // namespace

void registerStorage(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "alloc", Alloc);
  MT_EXPORT(exports, "free", Free);
  MT_EXPORT(exports, "read", Read);
  MT_EXPORT(exports, "write", Write);
  MT_EXPORT(exports, "storageBytes", StorageBytes);
  MT_EXPORT(exports, "storageBlock", StorageBlock);
  MT_EXPORT(exports, "memoryStats", MemoryStats);
  MT_EXPORT(exports, "resetPeakMemoryStats", ResetPeak);
  MT_EXPORT(exports, "liveStorages", LiveStorages);
  MT_EXPORT(exports, "allocatorStats", AllocatorStats);
  MT_EXPORT(exports, "emptyCache", EmptyCache);
  MT_EXPORT(exports, "setCacheLimit", SetCacheLimit);
}

}  // namespace mt
