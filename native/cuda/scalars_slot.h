// Where a many-tensor optimizer launch (adam_multi.cu, sgd_multi.cu) takes its step's scalars, for
// steps inside a CUDA graph (src/optim/graph_step.ts). Plain declarations (no CUDA types).
#pragma once
#include <cstdint>

namespace mt {

// kEager: by value, as always; kRead: from `ptr` (a device copy: the captured launch); kWrite: only
// queue writing the host-computed scalars into `ptr` (a replay's prologue), no update. `ptr` holds
// kScalarsSlotBytes.
struct CudaScalarsSlot {
  enum Mode { kEager = 0, kRead = 1, kWrite = 2 };
  void* ptr = nullptr;
  int mode = kEager;
};
constexpr int64_t kScalarsSlotBytes = 128;

}  // namespace mt
