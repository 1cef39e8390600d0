// The arguments of lossScalerUpdate, shared by the CPU binding (native/cpu/loss_scaler.cc) and the
// CUDA one (native/cuda/bindings_sync.cc): (stateId, stateOff, decisionId, decisionOff, scaleFactor,
// scaleWindow, minScale, delayedShift, consecutiveHysteresis, raiseErrorAtMinScale, gas), offsets in
// f64 elements. Checked here with the op's name, as DynamicLossScaler's constructor checks them.
#pragma once
#include <cmath>
#include <cstdint>
#include "tensor/f64_range.h"
#include "tensor/loss_scaler_rule.h"
#include "util/args.h"

namespace mt {

struct LossScalerArgs {
  int64_t stateId, stateOff;  // state[stateOff..stateOff + 8): loss_scaler_state's layout
  int64_t decisionId, decisionAt;  // the decision's skip (a stepDecision output's element 0)
  LossScalerOptions opts;
};

inline LossScalerArgs argLossScaler(const Napi::CallbackInfo& info, const char* op) {
  LossScalerArgs a{argInt(info, 0), argInt(info, 1), argInt(info, 2), argInt(info, 3),
                   {argNum(info, 4), argNum(info, 5), argNum(info, 6), argNum(info, 7), argBool(info, 8),
                    argBool(info, 9), argNum(info, 10)}};
  const LossScalerOptions& o = a.opts;
  MT_CHECK(o.scaleFactor >= 1 && std::isfinite(o.scaleFactor), op, ": scaleFactor must be finite and >= 1, got ",
           o.scaleFactor);
  MT_CHECK(o.scaleWindow >= 1 && o.scaleWindow == std::floor(o.scaleWindow) && std::isfinite(o.scaleWindow), op,
           ": scaleWindow must be an integer >= 1, got ", o.scaleWindow);
  MT_CHECK(o.minScale > 0 && std::isfinite(o.minScale), op, ": minScale must be finite and positive, got ", o.minScale);
  MT_CHECK(o.delayedShift >= 1 && o.delayedShift == std::floor(o.delayedShift) && std::isfinite(o.delayedShift), op,
           ": delayedShift must be an integer >= 1, got ", o.delayedShift);
  MT_CHECK(o.gas > 0 && std::isfinite(o.gas), op,
           ": gas (gradient accumulation steps) must be finite and positive, got ", o.gas);
  checkF64Range(op, "state", a.stateId, a.stateOff, loss_scaler_state::kSize);
  checkF64Range(op, "decision", a.decisionId, a.decisionAt, 1);
  return a;
}

}  // namespace mt
