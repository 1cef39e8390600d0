// cuda.adamMulti(pDtype, gDtype, sDtype, refs, lr, beta1, beta2, eps, weightDecay, step, decoupled,
// maximize[, gradScale[, slotId, slotOff, slotMode[, decId, decOff]]]): refs (an array or a Float64Array) holds 11
// numbers per tensor (param id, off, grad id, off, m id, off, v id, off, master id (-1: none), off, n), all on one
// device. The slot (f64 offset slotOff of storage slotId) is for steps in CUDA graphs (scalars_slot.h): mode 1
// updates reading the scalars from it, mode 2 only queues writing them into it. The decision (mode 1 only: f64
// offset decOff of storage decId, {skip, gradScale}) is a device-decided step's (scalars_slot.h): a skip changes
// nothing, else its gradScale replaces the slot's. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <vector>
#include "cuda/adam_multi.h"
#include "cuda/operands.h"
#include "cuda/scalars_slot_arg.h"
#include "util/args.h"
#include "util/grad_scale.h"

namespace mt {
namespace {

DType floatArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  DType d = toDType(int(argInt(info, i)));
  MT_CHECK(d == DType::F32 || d == DType::F64 || d == DType::BF16 || d == DType::F16, "adamMulti: ", what,
           " must be a floating-point dtype");
  return d;
}

Napi::Value AdamMulti(const Napi::CallbackInfo& info) {
  const DType pd = floatArg(info, 0, "param dtype"), gd = floatArg(info, 1, "grad dtype"), sd = floatArg(info, 2, "state dtype");
  MT_CHECK(sd == DType::F32 || sd == DType::F64, "adamMulti: the state dtype must be f32 or f64");
  const std::vector<int64_t> r = argInts(info, 3);
  MT_CHECK(r.size() % 11 == 0, "adamMulti: refs holds 11 numbers per tensor, got ", r.size());
  CudaAdamHyper h{argNum(info, 4), argNum(info, 5), argNum(info, 6), argNum(info, 7), argNum(info, 8),
                  argInt(info, 9), argBool(info, 10), argBool(info, 11), argGradScale(info, 12, "adamMulti")};
  MT_CHECK(h.step >= 1, "adamMulti: step counts from 1, got ", h.step);
  std::vector<CudaAdamMultiEntry> e;
  int dev = -1;
  const CudaScalarsSlot slot = argScalarsSlot(info, 13, "adamMulti", dev);
  for (size_t k = 0; k < r.size(); k += 11) {
    const int64_t n = r[k + 10];
    MT_CHECK(n >= 0, "adamMulti: tensor ", k / 11, " has negative length ", n);
    if (n == 0) continue;
    dev = devOf("adamMulti", r[k], dev);
    devOf("adamMulti", r[k + 2], dev);
    devOf("adamMulti", r[k + 4], dev);
    devOf("adamMulti", r[k + 6], dev);
    void* master = nullptr;
    if (r[k + 8] >= 0) master = dptr(r[k + 8], r[k + 9], n, sd), devOf("adamMulti", r[k + 8], dev);
    e.push_back({dptr(r[k], r[k + 1], n, pd), dptr(r[k + 2], r[k + 3], n, gd), dptr(r[k + 4], r[k + 5], n, sd),
                 dptr(r[k + 6], r[k + 7], n, sd), master, n});
  }
  // No entries: nothing is launched, unless the slot is to be written (the launcher decides).
  cudaAdamMulti(dev, int(pd), int(gd), int(sd), e.data(), int(e.size()), h, slot);
  return info.Env().Undefined();
}

}  // namespace

void registerCudaAdamMulti(Napi::Object cuda) {
  MT_EXPORT(cuda, "adamMulti", AdamMulti);
  cuda.Set("adamMultiTypedRefs", true);  // refs may be a Float64Array (util/args.h argInts)
  cuda.Set("optimScalarsSlot", true);    // adamMulti and sgdMulti take a scalars slot (CUDA graphs)
  cuda.Set("optimDecision", true);       // ... and, with it, a device decision {skip, gradScale}
}

}  // namespace mt
#endif
