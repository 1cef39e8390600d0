// lossScalerUpdate on the CPU: the reference of native/cuda/loss_scaler.cu (the rule:
// tensor/loss_scaler_rule.h).
#include "tensor/loss_scaler_args.h"

namespace mt {
namespace {

// lossScalerUpdate(stateId, stateOff, decisionId, decisionOff, scaleFactor, scaleWindow, minScale,
// delayedShift, consecutiveHysteresis, raiseErrorAtMinScale, gas): one DynamicLossScaler.update on
// the f64 state at stateOff, the overflow read from the f64 at decisionOff (a step decision's skip).
Napi::Value LossScalerUpdateBinding(const Napi::CallbackInfo& info) {
  const LossScalerArgs a = argLossScaler(info, "lossScalerUpdate");
  const double decision = *dataPtr<double>(a.decisionId, a.decisionAt, 1);
  lossScalerUpdate(dataPtr<double>(a.stateId, a.stateOff, loss_scaler_state::kSize), decision, a.opts);
  return info.Env().Undefined();
}

}  // namespace

void registerLossScaler(Napi::Env, Napi::Object exports) {
  MT_EXPORT(exports, "lossScalerUpdate", LossScalerUpdateBinding);
}

}  // namespace mt
