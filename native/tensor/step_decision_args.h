// The arguments of stepDecision, shared by the CPU binding (native/cpu/step_decision.cc) and the
// CUDA one (native/cuda/bindings_sync.cc): (sumsId, sumsOff, globalIdx, localIdx, unscale,
// maxNorm, check, outId, outOff[, unscaleId, unscaleOff]), offsets in f64 elements. Checked here,
// with the op's name. With unscaleId, unscale is the f64 there (a loss scaler state's element 5,
// loss_scaler_rule.h), read when the kernel runs; the by-value unscale is then ignored.
#pragma once
#include <cstdint>
#include "tensor/f64_range.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {

struct StepDecisionArgs {
  int64_t sumsId, globalAt, localAt;  // element offsets of the two sums in storage sumsId
  double unscale, maxNorm;
  bool check;
  int64_t outId, outOff;  // out[outOff..outOff + 2] = skip, gradScale, norm
  int64_t unscaleId = 0, unscaleAt = 0;  // unscaleId 0: the by-value unscale
};

inline StepDecisionArgs argStepDecision(const Napi::CallbackInfo& info, const char* op) {
  const int64_t sumsId = argInt(info, 0), sumsOff = argInt(info, 1), g = argInt(info, 2), l = argInt(info, 3);
  StepDecisionArgs a{sumsId, sumsOff + g, sumsOff + l, argNum(info, 4), argNum(info, 5), argBool(info, 6),
                     argInt(info, 7), argInt(info, 8)};
  MT_CHECK(sumsOff >= 0 && g >= 0 && l >= 0, op, ": sums offset ", sumsOff, ", global index ", g, " and local index ", l,
           " must be non-negative");
  const int64_t sumsLen = int64_t(storageAt(sumsId).bytes / sizeof(double));
  MT_CHECK(a.globalAt < sumsLen && a.localAt < sumsLen, op, ": sums elements ", a.globalAt, " (global) and ", a.localAt,
           " (local) must lie in storage ", sumsId, " of ", sumsLen, " f64");
  checkF64Range(op, "out", a.outId, a.outOff, 3);
  if (info.Length() > 9 && !info[9].IsUndefined()) {
    a.unscaleId = argInt(info, 9);
    a.unscaleAt = argInt(info, 10);
    checkF64Range(op, "unscale", a.unscaleId, a.unscaleAt, 1);
  }
  return a;
}

}  // namespace mt
