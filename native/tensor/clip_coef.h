// Gradient clipping's coefficient from the accumulated norm sum (src/optim/clip_grad.ts's rule,
// computed on the device so nothing is read back): the CPU reference (native/cpu/clip_coef.cc) and
// the CUDA kernel (native/cuda/clip_coef.cu) share this function, and both equal the JS arithmetic.
#pragma once
#include <cmath>

#include "util/host_device.h"

namespace mt {

// `sum` is Σ|g|^p for p = 1 or 2, max |g| for p = inf (>= 0 or NaN). The norm: sqrt(sum) for p = 2,
// else sum. The coefficient: min(1, maxNorm / (norm + 1e-6)), or 1 when the norm is NaN or
// infinite (the gradients are left as they are). Each step is one IEEE operation in double, as in JS.
struct ClipCoef {
  double norm, coef;
};

MT_HOST_DEVICE ClipCoef clipCoefficient(double sum, bool squares, double maxNorm) {
  const double norm = squares ? sqrt(sum) : sum;
  if (!(norm <= 1.7976931348623157e308)) return {norm, 1.0};  // NaN or +inf (the norm is never negative)
  const double c = maxNorm / (norm + 1e-6);
  return {norm, c < 1.0 ? c : 1.0};
}

}  // namespace mt
