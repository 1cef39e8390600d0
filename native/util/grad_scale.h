// The optional trailing gradient multiplier of the fused optimizer bindings (CPU and CUDA):
// mixed precision's 1/lossScale × clip factor, applied to the gradient in the state dtype.
#pragma once
#include <napi.h>
#include <cmath>
#include "util/args.h"
#include "util/check.h"

namespace mt {

// Argument i, or 1 when absent; a NaN or inf would poison every parameter it updates.
inline double argGradScale(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (info.Length() <= i || info[i].IsUndefined()) return 1.0;
  const double s = argNum(info, i);
  MT_CHECK(std::isfinite(s), op, ": gradScale must be finite, got ", s);
  return s;
}

}  // namespace mt
