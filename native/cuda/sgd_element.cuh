// One SGD element update, shared by optim.cu's per-tensor kernel and sgd_multi.cu's many-tensor
// kernel so both compute exactly the same operations (and contract them alike).
#pragma once
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace mt {
namespace cu {

template <typename S>
struct SgdScalars {
  S lr, mom, damp, wd, sign;
  bool nesterov, first;
};

// The step's constants in the state dtype; sign is the gradient multiplier, negated to maximize.
template <typename S>
SgdScalars<S> sgdScalars(const CudaSgdHyper& h) {
  return {S(h.lr), S(h.momentum), S(1.0 - h.dampening), S(h.weightDecay), S(h.maximize ? -h.gradScale : h.gradScale),
          h.nesterov, h.firstStep};
}

// Element i: reads the master (or the param), the gradient and the momentum buffer (null: no
// momentum); on the first step the buffer starts as the gradient, as torch.optim.SGD. `sign`: the
// gradient multiplier (c.sign, or a device-decided step's, sgd_multi.cu); a reference, as adamElement's.
template <typename P, typename G, typename S>
__device__ __forceinline__ void sgdElement(P* param, S* master, const G* grad, S* buf, int64_t i,
                                           const SgdScalars<S>& c, const S& sign) {
  // Products and fused multiply-adds spelled out (common.cuh's fmaRn, mulRn).
  S p = master ? master[i] : S(ld(param + i));
  S g = fmaRn(S(ld(grad + i)), sign, mulRn(c.wd, p));
  if (buf) {
    S b = c.first ? g : fmaRn(c.mom, buf[i], mulRn(c.damp, g));
    buf[i] = b;
    g = c.nesterov ? fmaRn(c.mom, b, g) : b;
  }
  S np = fmaRn(-c.lr, g, p);
  if (master) master[i] = np;
  st(param + i, np);
}
template <typename P, typename G, typename S>
__device__ __forceinline__ void sgdElement(P* param, S* master, const G* grad, S* buf, int64_t i,
                                           const SgdScalars<S>& c) {
  sgdElement(param, master, grad, buf, i, c, c.sign);
}

}  // namespace cu
}  // namespace mt
