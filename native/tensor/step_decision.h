// The optimizer step's decision, as the engine makes it on the host (engine.ts boundaryStep with
// precision.ts prepare and clip_grad.ts clipFactor): skip on an overflow, else the gradient
// multiplier (1/lossScale times the clip factor) and the unscaled norm. The CPU reference
// (native/cpu/step_decision.cc) and the CUDA kernel (native/cuda/step_decision.cu) share it, so a
// step decided on the device equals the host's bit for bit.
#pragma once
#include <cmath>
#include <limits>

#include "util/host_device.h"

namespace mt {

// Doubles, as the device writes them: skip 1 or 0; gradScale 0 when skipped; norm NaN when
// skipped or not clipping.
struct StepDecision {
  double skip, gradScale, norm;
};

namespace step_decision {

// One correctly rounded IEEE operation each, never fused into an FMA (nvcc contracts a product
// and a sum by default, GCC does for -march=x86-64-v3), since JS rounds each one.
MT_HOST_DEVICE double mul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  volatile double r = a * b;
  return r;
#endif
}
MT_HOST_DEVICE double add(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  volatile double r = a + b;
  return r;
#endif
}
MT_HOST_DEVICE double div(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  volatile double r = a / b;
  return r;
#endif
}
// One NaN for every platform (a GPU's arithmetic NaN has other bits than x86's, which keeps an input's).
MT_HOST_DEVICE double nan() {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(0x7ff8000000000000LL);
#else
  return std::numeric_limits<double>::quiet_NaN();
#endif
}
MT_HOST_DEVICE double canonical(double x) { return x == x ? x : nan(); }
MT_HOST_DEVICE bool isFinite(double x) { return fabs(x) <= 1.7976931348623157e308; }

}  // namespace step_decision

// global: Σg² over every data-parallel rank (the overflow check); local: this rank's (the norm);
// unscale: 1/lossScale; maxNorm <= 0 (or NaN): no clipping; check: skip on a non-finite global.
MT_HOST_DEVICE StepDecision stepDecision(double global, double local, double unscale, double maxNorm, bool check) {
  namespace sd = step_decision;
  if (check && !sd::isFinite(global)) return {1.0, 0.0, sd::nan()};
  double gradScale = unscale, norm = sd::nan();
  if (maxNorm > 0) {
    norm = sd::mul(sqrt(local), gradScale);
    double factor = 1.0;  // clipFactor: 1 for a non-finite norm, else Math.min(1, maxNorm / (norm + 1e-6))
    if (sd::isFinite(norm)) {
      const double c = sd::div(maxNorm, sd::add(norm, 1e-6));
      factor = c < 1.0 || c != c ? c : 1.0;
    }
    gradScale = sd::mul(gradScale, factor);
  }
  return {0.0, sd::canonical(gradScale), sd::canonical(norm)};
}

}  // namespace mt
