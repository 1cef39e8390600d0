// The geometry of fused attention's operands, shared by the CPU kernels (native/cpu/attention.cc)
// and the CUDA launchers (native/cuda/attention.h) so both read and bound the same views. Plain
// structs, no N-API: the .cu files include it (tensor/attention_args.h reads them from arguments).
#pragma once
#include <cstdint>

namespace mt {

// q [batch, heads, tq, dim], k and v [batch, heads, tk, dim].
struct AttnGeom {
  int64_t batch, heads, tq, tk, dim;
  double scale;
  bool causal;  // query i sees keys j <= i (top-left aligned)
};

// Element strides of the batch, head and position dims; the head dim has stride 1.
struct AttnStrides {
  int64_t b, h, t;
};

// Elements from a view's first to one past its last addressed one, over `t` positions (0 when empty).
inline int64_t attnViewSpan(const AttnStrides& s, const AttnGeom& g, int64_t t) {
  if (g.batch <= 0 || t <= 0) return 0;
  return (g.batch - 1) * s.b + (g.heads - 1) * s.h + (t - 1) * s.t + g.dim;
}

}  // namespace mt
