// One Adam / AdamW element update, shared by optim.cu's per-tensor kernel and adam_multi.cu's
// many-tensor kernel so both compute exactly the same operations (and contract them alike).
#pragma once
#include <cmath>
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace mt {
namespace cu {

template <typename S>
struct AdamScalars {
  S b1, b2, omb1, omb2, negStep, bc2Sqrt, eps, wdL2, decay, sign;
};

// The step's constants (bias corrections from h.step), in the state dtype.
template <typename S>
AdamScalars<S> adamScalars(const CudaAdamHyper& h) {
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, double(h.step));
  return {S(h.beta1), S(h.beta2), S(1.0 - h.beta1), S(1.0 - h.beta2), S(-h.lr / bc1),
          S(std::sqrt(bc2)), S(h.eps), S(h.decoupled ? 0.0 : h.weightDecay),
          S(h.decoupled ? 1.0 - h.lr * h.weightDecay : 1.0),
          S(h.maximize ? -h.gradScale : h.gradScale)};  // sign: the gradient multiplier, negated to maximize
}

// Element i: reads the master (or the param), the gradient and both moments; writes them back.
// `sign`: the gradient multiplier (c.sign, or a device-decided step's, adam_multi.cu); a reference, so
// the slot's instances read c.sign where they always did (same registers, ptxas sm_90).
template <typename P, typename G, typename S>
__device__ __forceinline__ void adamElement(P* param, S* master, const G* grad, S* m, S* v, int64_t i,
                                            const AdamScalars<S>& c, const S& sign) {
  // Products and fused multiply-adds spelled out (common.cuh's fmaRn, mulRn).
  S p = mulRn(master ? master[i] : S(ld(param + i)), c.decay);
  S g = fmaRn(S(ld(grad + i)), sign, mulRn(c.wdL2, p));
  S mi = fmaRn(m[i], c.b1, mulRn(c.omb1, g));
  S vi = fmaRn(v[i], c.b2, mulRn(mulRn(c.omb2, g), g));
  m[i] = mi;
  v[i] = vi;
  S denom = sqrt(vi) / c.bc2Sqrt + c.eps;
  S np = p + c.negStep * mi / denom;
  if (master) master[i] = np;
  st(param + i, np);
}
template <typename P, typename G, typename S>
__device__ __forceinline__ void adamElement(P* param, S* master, const G* grad, S* m, S* v, int64_t i,
                                            const AdamScalars<S>& c) {
  adamElement(param, master, grad, m, v, i, c, c.sign);
}

}  // namespace cu
}  // namespace mt
