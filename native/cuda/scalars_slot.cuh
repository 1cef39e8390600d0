// A many-tensor optimizer's step scalars in device memory (scalars_slot.h): a captured
// launch reads them from the slot, which each replay's prologue first rewrites with one thread,
// so a graph's optimizer step follows the host's step count, lr and hyperparameters.
#pragma once
#include "cuda/common.cuh"
#include "cuda/scalars_slot.h"

namespace mt {
namespace cu {

template <typename C>
__global__ void writeScalarsKernel(C* slot, const C c) {
  *slot = c;
}

// Where a many-tensor kernel instance takes its scalars: by value (eager), from the slot, or from
// the slot with a device decision (scalars_slot.h).
enum class ScalarsFrom { kValue, kSlot, kDecided };

// A decided launch's gradient multiplier: the decision's gradScale, negated when the slot's
// multiplier is negative (maximize); converted as the host converts an eager launch's.
template <typename S>
__device__ __forceinline__ S decidedSign(const double* decision, S slotSign) {
  const S g = S(decision[1]);
  return slotSign < S(0) ? -g : g;
}

// The scalars a launch uses: the slot's in kRead mode, else `c` (null when the launch passes them by value).
template <typename C>
const C* scalarsSource(const CudaScalarsSlot& slot) {
  static_assert(sizeof(C) <= size_t(kScalarsSlotBytes), "a scalars struct outgrew its device slot");
  return slot.mode == CudaScalarsSlot::kRead ? static_cast<const C*>(slot.ptr) : nullptr;
}

// kWrite mode: queues *slot = c on the stream (a kernel: the struct travels by value, no host buffer to keep alive).
template <typename C>
void writeScalars(cudaStream_t s, const CudaScalarsSlot& slot, const C& c, const char* op) {
  auto kernel = writeScalarsKernel<C>;
  MT_LAUNCH(kernel, 1, 1, 0, s, static_cast<C*>(slot.ptr), c);
  checkLaunch(op);
}

}  // namespace cu
}  // namespace mt
