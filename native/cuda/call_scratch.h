// Scratch device storages for one binding call (cuDNN and cuBLASLt workspaces, batch norm and
// layer norm partial sums, sort buffers): tagged 'other', and back in the caching allocator when
// the call returns or throws, once its kernels are queued. A freed block is reused only by work
// queued later on the same stream, so freeing before the kernels run is safe.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>
#include "tensor/storage.h"

namespace mt {

class CallScratch {
 public:
  explicit CallScratch(int dev) : dev_(dev) {}
  CallScratch(const CallScratch&) = delete;
  CallScratch& operator=(const CallScratch&) = delete;
  ~CallScratch() {
    for (int64_t id : ids_) freeStorage(id);
  }

  // A new scratch block of `bytes` on the call's device.
  void* operator()(int64_t bytes) {
    ids_.push_back(allocStorage(size_t(bytes), Tag::Other, dev_ + 1, false));
    return storageAt(ids_.back()).ptr;
  }

  // For launchers that take the allocator as a std::function.
  std::function<void*(int64_t)> fn() {
    return [this](int64_t bytes) { return (*this)(bytes); };
  }

 private:
  int dev_;
  std::vector<int64_t> ids_;
};

}  // namespace mt
