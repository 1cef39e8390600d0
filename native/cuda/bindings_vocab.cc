// N-API binding of the device-side vocabulary-slice indexing (vocab_range.cu): the same arguments as
// the CPU vocabRange (native/cpu/vocab_range.cc), with a device flag instead of a returned position.
// CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <cstdint>
#include <string>
#include "cuda/operands.h"
#include "cuda/vocab_range.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

// vocabRange(idDtype, idsId, idsOff, n, start, Vl, V, ignore, localId, maskDtype, hereId, validId, flagId):
// local (i32 [n]), here, valid (maskDtype [n]; validId 0: none) and the flag (i64 [1]) on the ids' device.
Napi::Value VocabRange(const Napi::CallbackInfo& info) {
  const char* op = "vocabRange";
  const DType id = toDType(int(argInt(info, 0)));
  MT_CHECK(id == DType::I32 || id == DType::I64, op, ": ids must be i32 or i64");
  const int64_t idsId = argInt(info, 1), idsOff = argInt(info, 2), n = argInt(info, 3);
  const VocabSlice s{argInt(info, 4), argInt(info, 5), argInt(info, 6), argInt(info, 7)};
  const int64_t localId = argInt(info, 8);
  const DType md = toDType(int(argInt(info, 9)));
  MT_CHECK(md == DType::F32 || md == DType::F64 || md == DType::BF16 || md == DType::F16, op,
           ": masks need a floating-point dtype");
  const int64_t hereId = argInt(info, 10), validId = argInt(info, 11), flagId = argInt(info, 12);
  const std::string problem = vocabSliceProblem(n, s);
  MT_CHECK(problem.empty(), op, ": ", problem);
  MT_CHECK(flagId != 0, op, ": the device check needs a flag");
  const int dev = devOf(op, flagId);
  devOf(op, idsId, dev);
  devOf(op, localId, dev);
  devOf(op, hereId, dev);
  void* valid = nullptr;
  if (validId) {
    devOf(op, validId, dev);
    valid = dptr(validId, 0, n, md);
  }
  cudaVocabRange(dev, int(id), dptr(idsId, idsOff, n, id), n, s, static_cast<int32_t*>(dptr(localId, 0, n, DType::I32)),
                 int(md), dptr(hereId, 0, n, md), valid, dptr(flagId, 0, 1, DType::I64));
  return info.Env().Undefined();
}

}  // namespace

void registerCudaVocab(Napi::Object cuda) {
  MT_EXPORT(cuda, "vocabRange", VocabRange);
}

}  // namespace mt
#endif
