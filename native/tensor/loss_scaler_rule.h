// fp16 dynamic loss scaling's update (DeepSpeed's update_scale as src/engine/loss_scaler.ts
// DynamicLossScaler.update has it) over a state of 8 f64 on the device, so the scale can follow a
// step decided there without a host read. The CPU twin (native/cpu/loss_scaler.cc) and the CUDA
// kernel (native/cuda/loss_scaler.cu) share it: the state after each update is JS's bit for bit.
#pragma once
#include "tensor/step_decision.h"
#include "util/host_device.h"

namespace mt {

// The state's elements. lossFactor = curScale / gas (what the loss is multiplied by) and
// unscale = 1 / curScale (stepDecision's), each one division after every update; raised: 1 once
// an update would have thrown in JS (an overflow at minScale with raiseErrorAtMinScale), sticky.
// Element 7 is reserved (left as it is).
namespace loss_scaler_state {
constexpr int kCurScale = 0, kCurIter = 1, kLastOverflowIter = 2, kCurHysteresis = 3, kLossFactor = 4, kUnscale = 5,
              kRaised = 6, kSize = 8;
}

struct LossScalerOptions {
  double scaleFactor, scaleWindow, minScale, delayedShift;
  bool consecutiveHysteresis, raiseErrorAtMinScale;
  double gas;  // gradient accumulation steps: lossFactor's divisor
};

// Math.max(a, b) for the positive scales here: NaN if either is.
MT_HOST_DEVICE double jsMax(double a, double b) {
  if (a != a || b != b) return step_decision::nan();
  return a > b ? a : b;
}

// One update with `decision`, a step decision's element 0 (skip): any value but 0 is an overflow
// (NaN too, as the host's `skip === 0` test counts it). JS's doubles, one rounding per operation.
MT_HOST_DEVICE void lossScalerUpdate(double* st, double decision, const LossScalerOptions& o) {
  namespace sd = step_decision;
  namespace ls = loss_scaler_state;
  const bool overflow = !(decision == 0.0);
  double scale = st[ls::kCurScale], iter = st[ls::kCurIter], hysteresis = st[ls::kCurHysteresis];
  if (overflow) {
    if (o.delayedShift == 1.0 || hysteresis == 1.0) {
      if (scale == o.minScale && o.raiseErrorAtMinScale) {
        // JS throws before changing anything.
        st[ls::kRaised] = 1.0;
        return;
      }
      scale = jsMax(sd::div(scale, o.scaleFactor), o.minScale);
    } else {
      hysteresis = sd::add(hysteresis, -1.0);
    }
    st[ls::kLastOverflowIter] = iter;
  } else {
    if (o.consecutiveHysteresis) hysteresis = o.delayedShift;
    // JS's % is fmod (exact, the dividend's sign); -0 === 0 holds in both.
    if (fmod(sd::add(iter, -st[ls::kLastOverflowIter]), o.scaleWindow) == 0.0) {
      if (!o.consecutiveHysteresis) hysteresis = o.delayedShift;
      scale = sd::mul(scale, o.scaleFactor);
    }
  }
  st[ls::kCurScale] = scale;
  st[ls::kCurIter] = sd::add(iter, 1.0);
  st[ls::kCurHysteresis] = hysteresis;
  st[ls::kLossFactor] = sd::div(scale, o.gas);
  st[ls::kUnscale] = sd::div(1.0, scale);
}

}  // namespace mt
