// The optional trailing (slot storage id, f64 offset, mode[, decision id, f64 offset]) of the
// many-tensor optimizer bindings (bindings_adam_multi.cc, bindings_sgd_multi.cc): see scalars_slot.h.
#pragma once
#include "cuda/scalars_slot.h"
#include "cuda/operands.h"
#include "util/args.h"

namespace mt {

// Absent (or mode 0): eager. Otherwise the slot's kScalarsSlotBytes, bounds-checked, on device `dev` (-1: any); sets dev.
// A decision (two more arguments, mode 1 only): its two f64, on the same device.
inline CudaScalarsSlot argScalarsSlot(const Napi::CallbackInfo& info, size_t i, const char* op, int& dev) {
  CudaScalarsSlot slot;
  if (info.Length() <= i || info[i].IsUndefined()) return slot;
  const int64_t id = argInt(info, i), off = argInt(info, i + 1), mode = argInt(info, i + 2);
  MT_CHECK(mode >= CudaScalarsSlot::kEager && mode <= CudaScalarsSlot::kWrite, op, ": slot mode must be 0, 1 or 2, got ", mode);
  const bool decided = info.Length() > i + 3 && !info[i + 3].IsUndefined();
  MT_CHECK(!decided || mode == CudaScalarsSlot::kRead, op, ": a device decision needs slot mode 1 (read the slot), got mode ", mode);
  slot.mode = int(mode);
  if (mode == CudaScalarsSlot::kEager) return slot;
  MT_CHECK(off >= 0, op, ": slot offset must be non-negative, got ", off);
  dev = devOf(op, id, dev);
  slot.ptr = dptr(id, off, kScalarsSlotBytes / 8, DType::F64);
  if (decided) {
    const int64_t decId = argInt(info, i + 3), decOff = argInt(info, i + 4);
    devOf(op, decId, dev);
    const int64_t decLen = int64_t(storageAt(decId).bytes / 8);
    MT_CHECK(decOff >= 0 && decOff + 2 <= decLen, op, ": the decision's f64 [", decOff, ", ", decOff + 2,
             ") must lie in storage ", decId, " of ", decLen, " f64");
    slot.decision = static_cast<const double*>(dptr(decId, decOff, 2, DType::F64));
  }
  return slot;
}

}  // namespace mt
