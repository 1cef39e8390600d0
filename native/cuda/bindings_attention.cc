// N-API bindings of the fused attention kernels (attention.cu). Each tensor comes as (id, element
// offset, [batch, head, position] strides); the head dim has stride 1 (checked in TypeScript and
// here). The storages' bounds are checked against each view's span. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <string>
#include "cuda/attention.h"
#include "cuda/attention_cudnn.h"
#include "cuda/bindings_nn.h"
#include "cuda/call_scratch.h"
#include "cuda/matmul.h"  // dtypeNameOf
#include "cuda/operands.h"
#include "cuda/device_memory.h"
#include "tensor/attention_args.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

// Operands and geometry are read by tensor/attention_args.h, as the CPU bindings read them.
using View = AttnView;

int deviceOfView(const char* op, const View& v, int dev) {
  int code = storageAt(v.id).device;
  MT_CHECK(isCudaCode(code), op, ": storage ", v.id, " is not on a CUDA device");
  MT_CHECK(dev < 0 || code - 1 == dev, op, ": operands on cuda:", dev, " and cuda:", code - 1);
  return code - 1;
}

// The device address of a view of `t` positions, bounds-checked over its whole span.
void* viewPtr(const View& v, const CudaAttnShape& g, int64_t t, DType d) {
  const int64_t item = int64_t(itemsize(d));
  return cudaDataPtr<uint8_t>(v.id, v.off * item, attnViewSpan(v.s, g, t) * item);
}

DType floatArg(const Napi::CallbackInfo& info, const char* op) {
  DType d = toDType(int(argInt(info, 0)));
  MT_CHECK(d == DType::F32 || d == DType::F64 || d == DType::BF16 || d == DType::F16, op, ": dtype ", dtypeNameOf(d),
           " is not floating point");
  return d;
}

// attentionForward(dtype, batch, heads, tq, tk, dim, scale, causal, q(id, off, strides),
//                  k(...), v(...), o(...), lseId): lse is a fresh [batch * heads * tq] storage.
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  const char* op = "scaledDotProductAttention";
  DType d = floatArg(info, op);
  CudaAttnShape g = attnGeomArg(info, op);
  View q = attnViewArg(info, 8, op, "q"), k = attnViewArg(info, 11, op, "k"), v = attnViewArg(info, 14, op, "v"),
       o = attnViewArg(info, 17, op, "o");
  int64_t lseId = argInt(info, 20);
  int dev = deviceOfView(op, o, -1);
  for (const View* x : {&q, &k, &v}) deviceOfView(op, *x, dev);
  deviceOfView(op, View{lseId, 0, {}}, dev);
  const int64_t rows = g.batch * g.heads * g.tq;
  void* lse = cudaDataPtr<uint8_t>(lseId, 0, rows * int64_t(itemsize(statOf(d))));
  cudaAttentionForward(dev, int(d), g, viewPtr(q, g, g.tq, d), q.s, viewPtr(k, g, g.tk, d), k.s, viewPtr(v, g, g.tk, d),
                       v.s, viewPtr(o, g, g.tq, d), o.s, lse);
  return info.Env().Undefined();
}

// attentionBackward(dtype, batch, heads, tq, tk, dim, scale, causal, q, k, v, o, dO (each id, off,
// strides), lseId, dq, dk, dv (each id, off, strides)): dq, dk, dv are overwritten.
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  const char* op = "scaledDotProductAttention backward";
  DType d = floatArg(info, op);
  CudaAttnShape g = attnGeomArg(info, op);
  View q = attnViewArg(info, 8, op, "q"), k = attnViewArg(info, 11, op, "k"), v = attnViewArg(info, 14, op, "v"),
       o = attnViewArg(info, 17, op, "o"), dO = attnViewArg(info, 20, op, "the output gradient");
  int64_t lseId = argInt(info, 23);
  View dq = attnViewArg(info, 24, op, "dq"), dk = attnViewArg(info, 27, op, "dk"), dv = attnViewArg(info, 30, op, "dv");
  int dev = deviceOfView(op, q, -1);
  for (const View* x : {&k, &v, &o, &dO, &dq, &dk, &dv}) deviceOfView(op, *x, dev);
  deviceOfView(op, View{lseId, 0, {}}, dev);
  const DType sd = statOf(d);
  const int64_t rows = cudaAttentionScratch(g);
  const void* lse = cudaDataPtr<uint8_t>(lseId, 0, rows * int64_t(itemsize(sd)));
  // The per-row dot(dO, o) terms (call_scratch.h).
  CallScratch scratch(dev);
  void* dots = rows > 0 ? scratch(int64_t(size_t(rows) * itemsize(sd))) : nullptr;
  cudaAttentionBackward(dev, int(d), g, viewPtr(q, g, g.tq, d), q.s, viewPtr(k, g, g.tk, d), k.s,
                          viewPtr(v, g, g.tk, d), v.s, viewPtr(o, g, g.tq, d), o.s, viewPtr(dO, g, g.tq, d), dO.s, lse,
                          viewPtr(dq, g, g.tq, d), dq.s, viewPtr(dk, g, g.tk, d), dk.s, viewPtr(dv, g, g.tk, d), dv.s,
                          dots);
  return info.Env().Undefined();
}

// attentionCudnnStats(): {plansBuilt, calls, refusals, lastRefusal} of MESHTRAIN_ATTENTION=cudnn.
Napi::Value AttentionCudnnStats(const Napi::CallbackInfo& info) {
  const CudnnAttentionStats st = cudnnAttentionStats();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("plansBuilt", double(st.plansBuilt));
  o.Set("calls", double(st.calls));
  o.Set("refusals", double(st.refusals));
  o.Set("lastRefusal", st.lastRefusal);
  return o;
}

}  // namespace

void registerCudaAttention(Napi::Object cuda) {
  MT_EXPORT(cuda, "attentionForward", AttentionForward);
  MT_EXPORT(cuda, "attentionBackward", AttentionBackward);
  MT_EXPORT(cuda, "attentionCudnnStats", AttentionCudnnStats);
}

}  // namespace mt
#endif
