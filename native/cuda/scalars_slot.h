// Where a many-tensor optimizer launch (adam_multi.cu, sgd_multi.cu) takes its step's scalars, for
// steps inside a CUDA graph (src/optim/graph_step.ts). Plain declarations (no CUDA types).
#pragma once
#include <cstdint>

namespace mt {

// kEager: by value, as always; kRead: from `ptr` (a device copy: the captured launch); kWrite: only
// queue writing the host-computed scalars into `ptr` (a replay's prologue), no update. `ptr` holds
// kScalarsSlotBytes. `decision` (kRead only, may be null): two f64 on the device, {skip,
// gradScale} (step_decision.cu), read when the launch runs: skip != 0 changes nothing, else
// gradScale is the gradient multiplier instead of the slot's (whose host writes gradScale 1 there:
// only its sign, negative to maximize, is used).
struct CudaScalarsSlot {
  enum Mode { kEager = 0, kRead = 1, kWrite = 2 };
  void* ptr = nullptr;
  int mode = kEager;
  const double* decision = nullptr;
};
constexpr int64_t kScalarsSlotBytes = 128;

}  // namespace mt
