// One Adam / AdamW element update, shared by optim.cu's per-tensor kernel and adam_multi.cu's
// many-tensor kernel (element by element, or W elements at a time) so all compute exactly the same
// operations.
#pragma once
#include <cmath>
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/vec.cuh"

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

// One element's update on values: p (the master, or the parameter in S) and the raw gradient g in;
// p the new parameter, m and v the new moments out. Products and fused multiply-adds spelled out
// (common.cuh's fmaRn, mulRn), so every kernel that calls this computes the same bits.
template <typename S>
__device__ __forceinline__ void adamUpdate(S& p, S g, S& m, S& v, const AdamScalars<S>& c, const S& sign) {
  p = mulRn(p, c.decay);
  g = fmaRn(g, sign, mulRn(c.wdL2, p));
  m = fmaRn(m, c.b1, mulRn(c.omb1, g));
  v = fmaRn(v, c.b2, mulRn(mulRn(c.omb2, g), g));
  const S denom = sqrt(v) / c.bc2Sqrt + c.eps;
  p = p + c.negStep * m / denom;
}

// Element i: reads the master (or the param), the gradient and both moments; writes them back.
// `sign`: the gradient multiplier (c.sign, or a device-decided step's, adam_multi.cu); a reference, so
// the slot's instances read c.sign where they always did (same registers, ptxas sm_90).
template <typename P, typename G, typename S>
__device__ __forceinline__ void adamElement(P* param, S* master, const G* grad, S* m, S* v, int64_t i,
                                            const AdamScalars<S>& c, const S& sign) {
  S p = master ? master[i] : S(ld(param + i));
  S mi = m[i], vi = v[i];
  adamUpdate(p, S(ld(grad + i)), mi, vi, c, sign);
  m[i] = mi;
  v[i] = vi;
  if (master) master[i] = p;
  st(param + i, p);
}
template <typename P, typename G, typename S>
__device__ __forceinline__ void adamElement(P* param, S* master, const G* grad, S* m, S* v, int64_t i,
                                            const AdamScalars<S>& c) {
  adamElement(param, master, grad, m, v, i, c, c.sign);
}

// Elements [i, i + W) as adamElement updates them, each array read and written as one W-element
// access (the caller checks every pointer's alignment to it).
template <int W, typename P, typename G, typename S>
__device__ __forceinline__ void adamGroup(P* param, S* master, const G* grad, S* m, S* v, int64_t i,
                                          const AdamScalars<S>& c, const S& sign) {
  Pack<S, W> p;
  if (master) {
    p = *reinterpret_cast<const Pack<S, W>*>(master + i);
  } else {
    const Pack<P, W> q = *reinterpret_cast<const Pack<P, W>*>(param + i);
#pragma unroll
    for (int k = 0; k < W; k++) p.v[k] = S(ld(&q.v[k]));
  }
  const Pack<G, W> g = *reinterpret_cast<const Pack<G, W>*>(grad + i);
  Pack<S, W> mi = *reinterpret_cast<const Pack<S, W>*>(m + i);
  Pack<S, W> vi = *reinterpret_cast<const Pack<S, W>*>(v + i);
#pragma unroll
  for (int k = 0; k < W; k++) adamUpdate(p.v[k], S(ld(&g.v[k])), mi.v[k], vi.v[k], c, sign);
  *reinterpret_cast<Pack<S, W>*>(m + i) = mi;
  *reinterpret_cast<Pack<S, W>*>(v + i) = vi;
  if (master) *reinterpret_cast<Pack<S, W>*>(master + i) = p;
  Pack<P, W> out;
#pragma unroll
  for (int k = 0; k < W; k++) st(&out.v[k], p.v[k]);
  *reinterpret_cast<Pack<P, W>*>(param + i) = out;
}

}  // namespace cu
}  // namespace mt
