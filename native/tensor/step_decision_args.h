// The arguments of stepDecision, shared by the CPU binding (native/cpu/step_decision.cc) and the
// CUDA one (native/cuda/bindings_sync.cc): (sumsId, sumsOff, globalIdx, localIdx, unscale,
// maxNorm, check, outId, outOff), offsets in f64 elements. Checked here, with the op's name.
#pragma once
#include <cstdint>
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {

struct StepDecisionArgs {
  int64_t sumsId, globalAt, localAt;  // element offsets of the two sums in storage sumsId
  double unscale, maxNorm;
  bool check;
  int64_t outId, outOff;  // out[outOff..outOff + 2] = skip, gradScale, norm
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
  const int64_t outLen = int64_t(storageAt(a.outId).bytes / sizeof(double));
  MT_CHECK(a.outOff >= 0 && a.outOff + 3 <= outLen, op, ": out elements [", a.outOff, ", ", a.outOff + 3,
           ") must lie in storage ", a.outId, " of ", outLen, " f64");
  return a;
}

}  // namespace mt
