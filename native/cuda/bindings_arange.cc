// cuda.arange(dtype, id, off, n, start, step): fills n elements on the device (arange.cu). CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include "cuda/operands.h"
#include "util/args.h"

namespace mt {

void cudaArange(int dev, int dtype, void* p, int64_t n, double start, double step);  // arange.cu

namespace {

Napi::Value Arange(const Napi::CallbackInfo& info) {
  const DType d = toDType(int(argInt(info, 0)));
  const int64_t id = argInt(info, 1), off = argInt(info, 2), n = argInt(info, 3);
  MT_CHECK(n >= 0 && off >= 0, "arange: bad range of ", n, " elements at ", off);
  cudaArange(devOf("arange", id), int(d), dptr(id, off, n, d), n, argNum(info, 4), argNum(info, 5));
  return info.Env().Undefined();
}

}  // namespace

void registerCudaArange(Napi::Object cuda) { MT_EXPORT(cuda, "arange", Arange); }

}  // namespace mt
#endif
