// N-API bindings of the one-read-per-step machinery: `cuda.normPowInto` (gradient norms and
// overflow checks accumulated into an f64 on the device, grad_norm.cu), `cuda.clipCoefficient` (the
// clipping coefficient from that sum, clip_coef.cu), `cuda.stepDecision` (the step's skip and gradient
// multiplier from the sums, step_decision.cu), `cuda.lossScalerUpdate` (fp16 dynamic loss scaling's
// update from that decision, loss_scaler.cu) and `cudaSyncCount(dev)` (host waits counted by our
// code, host_sync.h). CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <cmath>
#include <cstdint>
#include "cuda/host_sync.h"
#include "cuda/kernels.h"
#include "cuda/operands.h"
#include "tensor/loss_scaler_args.h"
#include "tensor/step_decision_args.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

// normPowInto(dtype, id, off, n, p, accId, accOff): acc[accOff] (f64) += sum |x|^p over the range
// (p = inf: max |x|), queued on the device; nothing is read back.
Napi::Value NormPowInto(const Napi::CallbackInfo& info) {
  const char* op = "normPowInto";
  DType d = toDType(int(argInt(info, 0)));
  int64_t id = argInt(info, 1), off = argInt(info, 2), n = argInt(info, 3);
  double p = argNum(info, 4);
  int64_t accId = argInt(info, 5), accOff = argInt(info, 6);
  MT_CHECK(p > 0, op, ": p must be positive, got ", p);
  MT_CHECK(n >= 0, op, ": negative length ", n);
  MT_CHECK(d == DType::F32 || d == DType::F64 || d == DType::BF16 || d == DType::F16, op,
           ": the range must hold a float dtype, got code ", int(d));
  int dev = devOf(op, accId);
  auto* acc = static_cast<double*>(dptr(accId, accOff, 1, DType::F64));
  if (n == 0) return info.Env().Undefined();
  devOf(op, id, dev);
  const void* x = dptr(id, off, n, d);
  const int64_t chunks = cudaNormPowScratch(n);
  if (chunks == 1) {
    cudaNormPowInto(dev, int(d), x, n, p, acc, nullptr);
    return info.Env().Undefined();
  }
  // The chunk partials live in scratch tagged 'other', back in the cache at once: the next user of
  // the block runs on the same compute stream, after the combine kernel.
  int64_t scratch = allocStorage(size_t(chunks) * sizeof(double), Tag::Other, dev + 1, false);
  try {
    cudaNormPowInto(dev, int(d), x, n, p, acc, static_cast<double*>(storageAt(scratch).ptr));
  } catch (...) {
    freeStorage(scratch);
    throw;
  }
  freeStorage(scratch);
  return info.Env().Undefined();
}

// clipCoefficient(id, off, p, maxNorm): as the CPU binding (native/cpu/clip_coef.cc), queued on the
// device: slot off (Σ|g|^p) becomes the norm, slot off + 1 the coefficient; nothing is read back.
Napi::Value ClipCoefficient(const Napi::CallbackInfo& info) {
  const char* op = "clipCoefficient";
  int64_t id = argInt(info, 0), off = argInt(info, 1);
  double p = argNum(info, 2), maxNorm = argNum(info, 3);
  MT_CHECK(p == 1 || p == 2 || std::isinf(p), op, ": p must be 1, 2 or inf, got ", p);
  int dev = devOf(op, id);
  cudaClipCoefficient(dev, static_cast<double*>(dptr(id, off, 2, DType::F64)), p == 2, maxNorm);
  return info.Env().Undefined();
}

// stepDecision(sumsId, sumsOff, globalIdx, localIdx, unscale, maxNorm, check, outId, outOff[,
// unscaleId, unscaleOff]): as the CPU binding (native/cpu/step_decision.cc), queued on the device:
// out's three f64 are written, and the unscale pointer's f64 read, when the kernel runs (capturable:
// no read back, no allocation).
Napi::Value StepDecisionBinding(const Napi::CallbackInfo& info) {
  const char* op = "stepDecision";
  const StepDecisionArgs a = argStepDecision(info, op);
  const int dev = devOf(op, a.sumsId);
  devOf(op, a.outId, dev);
  cudaStepDecision(dev, static_cast<const double*>(dptr(a.sumsId, a.globalAt, 1, DType::F64)),
                   static_cast<const double*>(dptr(a.sumsId, a.localAt, 1, DType::F64)), a.unscale,
                   static_cast<const double*>(optionalPtr(op, a.unscaleId, a.unscaleAt, 1, DType::F64, dev)), a.maxNorm,
                   a.check, static_cast<double*>(dptr(a.outId, a.outOff, 3, DType::F64)));
  return info.Env().Undefined();
}

// lossScalerUpdate(stateId, stateOff, decisionId, decisionOff, scaleFactor, scaleWindow, minScale,
// delayedShift, consecutiveHysteresis, raiseErrorAtMinScale, gas): as the CPU binding
// (native/cpu/loss_scaler.cc), queued on the device: the state is updated from the decision's skip
// when the kernel runs (capturable: no read back, no allocation).
Napi::Value LossScalerUpdateBinding(const Napi::CallbackInfo& info) {
  const char* op = "lossScalerUpdate";
  const LossScalerArgs a = argLossScaler(info, op);
  const int dev = devOf(op, a.stateId);
  devOf(op, a.decisionId, dev);
  cudaLossScalerUpdate(dev, static_cast<double*>(dptr(a.stateId, a.stateOff, loss_scaler_state::kSize, DType::F64)),
                       static_cast<const double*>(dptr(a.decisionId, a.decisionAt, 1, DType::F64)), a.opts);
  return info.Env().Undefined();
}

// cudaSyncCount(dev) -> number: host waits for cuda:dev counted so far.
Napi::Value SyncCount(const Napi::CallbackInfo& info) {
  int64_t dev = argInt(info, 0);
  MT_CHECK(dev >= 0 && dev < kMaxCudaDevices, "cudaSyncCount: no device cuda:", dev);
  return Napi::Number::New(info.Env(), double(hostSyncCount(int(dev))));
}

}  // namespace

void registerCudaSync(Napi::Object cuda, Napi::Object exports) {
  MT_EXPORT(cuda, "normPowInto", NormPowInto);
  MT_EXPORT(cuda, "clipCoefficient", ClipCoefficient);
  MT_EXPORT(cuda, "stepDecision", StepDecisionBinding);
  MT_EXPORT(cuda, "lossScalerUpdate", LossScalerUpdateBinding);
  MT_EXPORT(exports, "cudaSyncCount", SyncCount);
}

}  // namespace mt
#endif
