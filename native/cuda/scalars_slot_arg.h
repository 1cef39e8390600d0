// The optional trailing (slot storage id, f64 offset, mode) of the many-tensor optimizer bindings
// (bindings_adam_multi.cc, bindings_sgd_multi.cc): see scalars_slot.h.
#pragma once
#include "cuda/scalars_slot.h"
#include "cuda/operands.h"
#include "util/args.h"

namespace mt {

// Absent (or mode 0): eager. Otherwise the slot's kScalarsSlotBytes, bounds-checked, on device `dev` (-1: any); sets dev.
inline CudaScalarsSlot argScalarsSlot(const Napi::CallbackInfo& info, size_t i, const char* op, int& dev) {
  CudaScalarsSlot slot;
  if (info.Length() <= i || info[i].IsUndefined()) return slot;
  const int64_t id = argInt(info, i), off = argInt(info, i + 1), mode = argInt(info, i + 2);
  MT_CHECK(mode >= CudaScalarsSlot::kEager && mode <= CudaScalarsSlot::kWrite, op, ": slot mode must be 0, 1 or 2, got ", mode);
  slot.mode = int(mode);
  if (mode == CudaScalarsSlot::kEager) return slot;
  MT_CHECK(off >= 0, op, ": slot offset must be non-negative, got ", off);
  dev = devOf(op, id, dev);
  slot.ptr = dptr(id, off, kScalarsSlotBytes / 8, DType::F64);
  return slot;
}

}  // namespace mt
