// Native buffers with tagged memory accounting. Tensors refer to storages by integer id.
#pragma once
#include <napi.h>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include "tensor/dtype.h"

namespace mt {

// Keep in sync with src/tensor/storage.ts.
enum class Tag : int { Param = 0, Grad = 1, Optim = 2, Activation = 3, Comm = 4, Other = 5 };
constexpr int kNumTags = 6;
// Device 0 is the CPU, 1 + k is cuda:k; the last code is host memory accounted apart from the
// CPU's (ZeRO's optimizer offload pool), so memoryStats shows what was offloaded.
constexpr int kMaxDevices = 10;
constexpr int kCpuOffloadPool = kMaxDevices - 1;

// cuda:k is device code 1 + k.
constexpr int kMaxCudaDevices = 8;
inline bool isCudaCode(int device) { return device >= 1 && device <= kMaxCudaDevices; }

struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  size_t capacity = 0;  // bytes really held (the allocator rounds up)
  int tag = 0;
  int device = 0;
  bool live = false;
  // Memory owned elsewhere (adoptStorage): returned through `release` instead of free().
  void (*release)(void* ctx, void* ptr) = nullptr;
  void* releaseCtx = nullptr;
};

int64_t allocStorage(size_t bytes, Tag tag, int device, bool zero);
void freeStorage(int64_t id);
// Registers memory that another allocator owns (e.g. a shared-memory arena) as a storage with a
// tag; freeing the storage calls release(ctx, ptr). Must not be called with that allocator's lock held.
int64_t adoptStorage(void* ptr, size_t bytes, Tag tag, int device, void (*release)(void*, void*), void* ctx);
// Counts memory that kernels own outside any storage (e.g. oneDNN's workspace) under a tag.
void accountBytes(Tag tag, int device, int64_t delta);

// The storage table's lookup side, read without its mutex (a lookup per operand of every op):
// chunks of kStorageChunk entries that never move, published before the ids they hold.
constexpr int64_t kStorageChunk = 4096;
constexpr int64_t kMaxStorageChunks = 1 << 14;
namespace detail {
extern Storage* storageChunks[kMaxStorageChunks];  // written under the table's mutex
extern std::atomic<int64_t> storageNextId;          // ids below it have a chunk (release store after it)
[[noreturn]] void badStorage(int64_t id);
}  // namespace detail

// The live storage `id`; a clear error for an id never handed out or already freed.
inline Storage& storageAt(int64_t id) {
  if (__builtin_expect(id > 0 && id < detail::storageNextId.load(std::memory_order_acquire), 1)) {
    Storage& s = detail::storageChunks[id / kStorageChunk][id % kStorageChunk];
    if (__builtin_expect(s.live, 1)) return s;
  }
  detail::badStorage(id);
}

// The address of element `offset` of type T in storage `id`, checked against its size, on any device.
template <typename T>
T* anyDevicePtr(int64_t id, int64_t offset, int64_t count) {
  Storage& s = storageAt(id);
  MT_CHECK(offset >= 0 && count >= 0 &&
               size_t(offset + count) * sizeof(T) <= s.bytes,
           "access of elements [", offset, ", ", offset + count, ") is outside storage ", id,
           " of ", s.bytes, " bytes");
  return reinterpret_cast<T*>(s.ptr) + offset;
}

// A CPU address for the CPU kernels: a CUDA storage here is an op without a CUDA kernel, and
// reading device memory from the host would crash the process, so it is refused.
template <typename T>
T* dataPtr(int64_t id, int64_t offset, int64_t count) {
  MT_CHECK(!isCudaCode(storageAt(id).device), "storage ", id, " is on cuda:", storageAt(id).device - 1,
           " but this kernel runs on the CPU (the op has no CUDA kernel yet)");
  return anyDevicePtr<T>(id, offset, count);
}

// A device address for the CUDA kernels.
template <typename T>
T* cudaDataPtr(int64_t id, int64_t offset, int64_t count) {
  MT_CHECK(isCudaCode(storageAt(id).device), "storage ", id, " is on the CPU but this kernel runs on CUDA");
  return anyDevicePtr<T>(id, offset, count);
}

inline void* bytePtr(int64_t id, int64_t byteOffset, int64_t bytes) {
  return dataPtr<uint8_t>(id, byteOffset, bytes);
}

void registerStorage(Napi::Env env, Napi::Object exports);

}  // namespace mt
