// cuda.sgdMulti(pDtype, gDtype, sDtype, refs, lr, momentum, dampening, weightDecay, nesterov,
// maximize, firstStep[, gradScale[, slotId, slotOff, slotMode[, decId, decOff]]]): refs (an array or a Float64Array)
// holds 9 numbers per tensor (param id, off, grad id, off, buf id (-1: no momentum), off, master id
// (-1: none), off, n), all on one device. The slot and the decision are adamMulti's (bindings_adam_multi.cc). CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <vector>
#include "cuda/operands.h"
#include "cuda/scalars_slot_arg.h"
#include "cuda/sgd_multi.h"
#include "util/args.h"
#include "util/grad_scale.h"

namespace mt {
namespace {

constexpr size_t kRef = 9;  // numbers per tensor in refs

DType floatArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  DType d = toDType(int(argInt(info, i)));
  MT_CHECK(d == DType::F32 || d == DType::F64 || d == DType::BF16 || d == DType::F16, "sgdMulti: ", what,
           " must be a floating-point dtype");
  return d;
}

// An optional state range (id -1: none) of n elements of dtype d on device dev.
void* statePtr(const std::vector<int64_t>& r, size_t at, int64_t n, DType d, int dev) {
  if (r[at] < 0) return nullptr;
  devOf("sgdMulti", r[at], dev);
  return dptr(r[at], r[at + 1], n, d);
}

Napi::Value SgdMulti(const Napi::CallbackInfo& info) {
  const DType pd = floatArg(info, 0, "param dtype"), gd = floatArg(info, 1, "grad dtype"), sd = floatArg(info, 2, "state dtype");
  MT_CHECK(sd == DType::F32 || sd == DType::F64, "sgdMulti: the state dtype must be f32 or f64");
  const std::vector<int64_t> r = argInts(info, 3);
  MT_CHECK(r.size() % kRef == 0, "sgdMulti: refs holds ", kRef, " numbers per tensor, got ", r.size());
  CudaSgdHyper h{argNum(info, 4), argNum(info, 5), argNum(info, 6), argNum(info, 7),
                 argBool(info, 8), argBool(info, 9), argBool(info, 10), argGradScale(info, 11, "sgdMulti")};
  std::vector<CudaSgdMultiEntry> e;
  e.reserve(r.size() / kRef);
  int dev = -1;
  const CudaScalarsSlot slot = argScalarsSlot(info, 12, "sgdMulti", dev);
  for (size_t k = 0; k < r.size(); k += kRef) {
    const int64_t n = r[k + 8];
    MT_CHECK(n >= 0, "sgdMulti: tensor ", k / kRef, " has negative length ", n);
    if (n == 0) continue;
    dev = devOf("sgdMulti", r[k], dev);
    devOf("sgdMulti", r[k + 2], dev);
    e.push_back({dptr(r[k], r[k + 1], n, pd), dptr(r[k + 2], r[k + 3], n, gd), statePtr(r, k + 4, n, sd, dev),
                 statePtr(r, k + 6, n, sd, dev), n});
  }
  // No entries: nothing is launched, unless the slot is to be written (the launcher decides).
  cudaSgdMulti(dev, int(pd), int(gd), int(sd), e.data(), int(e.size()), h, slot);
  return info.Env().Undefined();
}

}  // namespace

void registerCudaSgdMulti(Napi::Object cuda) {
  MT_EXPORT(cuda, "sgdMulti", SgdMulti);  // refs may be a Float64Array (util/args.h argInts)
}

}  // namespace mt
#endif
