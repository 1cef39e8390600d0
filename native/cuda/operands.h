// Operand checks shared by the CUDA bindings: which device a storage is on (all operands of one
// call on the same device) and a bounds-checked device pointer to a range of elements.
#pragma once
#include <cstdint>
#include "tensor/dtype.h"
#include "tensor/storage.h"
#include "util/check.h"

namespace mt {

// The CUDA device index of storage `id`; with dev >= 0, also that it is that device.
inline int devOf(const char* op, int64_t id, int dev = -1) {
  int code = storageAt(id).device;
  MT_CHECK(isCudaCode(code), op, ": storage ", id, " is not on a CUDA device");
  MT_CHECK(dev < 0 || code - 1 == dev, op, ": operands on cuda:", dev, " and cuda:", code - 1);
  return code - 1;
}

// A device pointer to `count` elements of dtype d from element offset `off`, bounds-checked.
inline void* dptr(int64_t id, int64_t off, int64_t count, DType d) {
  const int64_t item = int64_t(itemsize(d));
  return cudaDataPtr<uint8_t>(id, off * item, count * item);
}

// The same for an optional operand: null for id 0, else on device `dev`.
inline void* optionalPtr(const char* op, int64_t id, int64_t off, int64_t count, DType d, int dev) {
  if (id == 0) return nullptr;
  devOf(op, id, dev);
  return dptr(id, off, count, d);
}

// The dtype of per-row or per-channel statistics and biases beside a tensor of dtype d: f64 for
// f64, f32 for the rest (16-bit inputs keep their statistics in f32).
inline DType statOf(DType d) { return d == DType::F64 ? DType::F64 : DType::F32; }

}  // namespace mt
