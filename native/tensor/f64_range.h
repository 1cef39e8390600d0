// The bounds check of the f64 operands the one-thread step kernels read and write (stepDecision,
// lossScalerUpdate), with the op's name and what the elements are.
#pragma once
#include <cstdint>
#include "tensor/storage.h"
#include "util/check.h"

namespace mt {

// Checks that f64 elements [off, off + n) lie in storage id.
inline void checkF64Range(const char* op, const char* what, int64_t id, int64_t off, int64_t n) {
  const int64_t len = int64_t(storageAt(id).bytes / sizeof(double));
  MT_CHECK(off >= 0 && off + n <= len, op, ": ", what, " elements [", off, ", ", off + n, ") must lie in storage ", id,
           " of ", len, " f64");
}

}  // namespace mt
