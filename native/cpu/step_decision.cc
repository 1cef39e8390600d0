// stepDecision on the CPU: the reference of native/cuda/step_decision.cu (the rule: tensor/step_decision.h).
#include "tensor/step_decision.h"
#include "tensor/step_decision_args.h"

namespace mt {
namespace {

// stepDecision(sumsId, sumsOff, globalIdx, localIdx, unscale, maxNorm, check, outId, outOff[,
// unscaleId, unscaleOff]): out (f64) [outOff, outOff + 3) = skip, gradScale, norm from the f64 sums at
// sumsOff + globalIdx and sumsOff + localIdx; unscale from storage unscaleId when given.
Napi::Value StepDecisionBinding(const Napi::CallbackInfo& info) {
  const StepDecisionArgs a = argStepDecision(info, "stepDecision");
  const double global = *dataPtr<double>(a.sumsId, a.globalAt, 1), local = *dataPtr<double>(a.sumsId, a.localAt, 1);
  double* out = dataPtr<double>(a.outId, a.outOff, 3);
  const double unscale = a.unscaleId ? *dataPtr<double>(a.unscaleId, a.unscaleAt, 1) : a.unscale;
  const StepDecision d = stepDecision(global, local, unscale, a.maxNorm, a.check);
  out[0] = d.skip;
  out[1] = d.gradScale;
  out[2] = d.norm;
  return info.Env().Undefined();
}

}  // namespace

void registerStepDecision(Napi::Env, Napi::Object exports) { MT_EXPORT(exports, "stepDecision", StepDecisionBinding); }

}  // namespace mt
