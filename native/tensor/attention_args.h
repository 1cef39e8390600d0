// Reading fused attention's geometry and operand views from N-API arguments, one reader for the
// CPU and CUDA bindings (native/cpu/attention.cc, native/cuda/bindings_attention.cc), which take
// the same argument layout: (dtype, batch, heads, tq, tk, dim, scale, causal, then each operand as
// id, element offset, [batch, head, position] strides).
#pragma once
#include "tensor/attention_geom.h"
#include "util/args.h"

namespace mt {

// One [batch, heads, T, dim] operand: storage id, element offset, strides.
struct AttnView {
  int64_t id, off;
  AttnStrides s;
};

// The operand at arguments at (id), at + 1 (offset), at + 2 (strides); `what` names it in errors.
inline AttnView attnViewArg(const Napi::CallbackInfo& info, size_t at, const char* op, const char* what) {
  auto st = argInts(info, at + 2);
  MT_CHECK(st.size() == 3, op, ": ", what, " strides must be [batch, head, position], got ", st.size(), " values");
  MT_CHECK(st[0] >= 0 && st[1] >= 0 && st[2] >= 0, op, ": ", what, " has a negative stride [", st[0], ", ", st[1], ", ",
           st[2], "]");
  return AttnView{argInt(info, at), argInt(info, at + 1), AttnStrides{st[0], st[1], st[2]}};
}

// The geometry at arguments 1-7 (batch, heads, tq, tk, dim, scale, causal).
inline AttnGeom attnGeomArg(const Napi::CallbackInfo& info, const char* op) {
  AttnGeom g{argInt(info, 1), argInt(info, 2), argInt(info, 3), argInt(info, 4), argInt(info, 5), argNum(info, 6),
             argBool(info, 7)};
  MT_CHECK(g.batch >= 0 && g.heads >= 1 && g.tq >= 0 && g.tk >= 0 && g.dim >= 1, op, ": bad shape batch ", g.batch,
           ", heads ", g.heads, ", Tq ", g.tq, ", Tk ", g.tk, ", dim ", g.dim);
  return g;
}

}  // namespace mt
