// clipCoefficient on the CPU: the reference of native/cuda/clip_coef.cu (the rule: tensor/clip_coef.h).
#include <cmath>
#include "tensor/clip_coef.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

// clipCoefficient(id, off, p, maxNorm): f64 slot `off` of storage `id` holds Σ|g|^p (p = inf: max
// |g|); afterwards it holds the total norm and slot off + 1 the clipping coefficient.
Napi::Value ClipCoefficient(const Napi::CallbackInfo& info) {
  int64_t id = argInt(info, 0), off = argInt(info, 1);
  double p = argNum(info, 2), maxNorm = argNum(info, 3);
  MT_CHECK(p == 1 || p == 2 || std::isinf(p), "clipCoefficient: p must be 1, 2 or inf, got ", p);
  double* slot = dataPtr<double>(id, off, 2);
  const ClipCoef r = clipCoefficient(slot[0], p == 2, maxNorm);
  slot[0] = r.norm;
  slot[1] = r.coef;
  return info.Env().Undefined();
}

}  // namespace

void registerClipCoef(Napi::Env, Napi::Object exports) { MT_EXPORT(exports, "clipCoefficient", ClipCoefficient); }

}  // namespace mt
