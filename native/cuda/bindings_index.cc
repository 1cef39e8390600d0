// N-API bindings of the embedding and cross-entropy calls that keep their indices on the device
// (index_check.cu, embedding_sort.cu): range checks write a device flag that the TypeScript side
// reads at its next synchronizing call (src/tensor/device_checks.ts). CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <cstdint>
#include "cuda/bindings_nn.h"
#include "cuda/call_scratch.h"
#include "cuda/device_memory.h"
#include "cuda/index_check.h"
#include "cuda/kernels.h"
#include "cuda/operands.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

DType indexArg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  DType d = toDType(int(argInt(info, i)));
  MT_CHECK(d == DType::I32 || d == DType::I64, op, ": indices must be i32 or i64");
  return d;
}

// indexCheck(idDtype, idsId, idsOff, n, hi, ignore, flagId, countId): flag (i64 [1]) and count
// (i64 [1], id 0: none) are written by the device.
Napi::Value IndexCheck(const Napi::CallbackInfo& info) {
  const char* op = "index check";
  DType id = indexArg(info, 0, op);
  int64_t idsId = argInt(info, 1), idsOff = argInt(info, 2), n = argInt(info, 3), hi = argInt(info, 4),
          ignore = argInt(info, 5), flagId = argInt(info, 6), countId = argInt(info, 7);
  MT_CHECK(n >= 0, op, ": negative length ", n);
  int dev = devOf(op, flagId);
  devOf(op, idsId, dev);
  void* count = optionalPtr(op, countId, 0, 1, DType::I64, dev);
  cudaIndexCheck(dev, int(id), dptr(idsId, idsOff, n, id), n, hi, ignore, dptr(flagId, 0, 1, DType::I64), count);
  return info.Env().Undefined();
}

// embeddingGather(dtype, idDtype, idsId, idsOff, n, wId, wOff, V, D, outId, outOff, flagId)
Napi::Value EmbeddingGather(const Napi::CallbackInfo& info) {
  const char* op = "embedding";
  DType d = toDType(int(argInt(info, 0)));
  DType id = indexArg(info, 1, op);
  int64_t idsId = argInt(info, 2), idsOff = argInt(info, 3), n = argInt(info, 4), wId = argInt(info, 5),
          wOff = argInt(info, 6), V = argInt(info, 7), D = argInt(info, 8), outId = argInt(info, 9),
          outOff = argInt(info, 10), flagId = argInt(info, 11);
  MT_CHECK(n >= 0 && V >= 0 && D >= 0, op, ": negative size");
  int dev = devOf(op, outId);
  devOf(op, idsId, dev);
  devOf(op, wId, dev);
  devOf(op, flagId, dev);
  cudaEmbeddingGather(dev, int(d), int(id), dptr(idsId, idsOff, n, id), n, dptr(wId, wOff, V * D, d), V, D,
                      dptr(outId, outOff, n * D, d), dptr(flagId, 0, 1, DType::I64));
  return info.Env().Undefined();
}

// embeddingScatter(dtype, idDtype, idsId, idsOff, n, gId, gOff, dwId, V, D[, dwOff, add]): dw is
// [V, D] contiguous from dwOff; add: the sums are added to what it holds (a parameter's .grad).
Napi::Value EmbeddingScatter(const Napi::CallbackInfo& info) {
  const char* op = "embedding backward";
  DType d = toDType(int(argInt(info, 0)));
  DType id = indexArg(info, 1, op);
  int64_t idsId = argInt(info, 2), idsOff = argInt(info, 3), n = argInt(info, 4), gId = argInt(info, 5),
          gOff = argInt(info, 6), dwId = argInt(info, 7), V = argInt(info, 8), D = argInt(info, 9);
  const int64_t dwOff = info.Length() > 10 ? argInt(info, 10) : 0;
  const bool add = info.Length() > 11 && argBool(info, 11);
  MT_CHECK(n >= 0 && V >= 0 && D >= 0, op, ": negative size");
  MT_CHECK(dwOff >= 0, op, ": negative offset ", dwOff);
  if (V * D == 0) return info.Env().Undefined();
  int dev = devOf(op, dwId);
  devOf(op, idsId, dev);
  devOf(op, gId, dev);
  // Sort buffers (call_scratch.h).
  const int64_t bytes = cudaEmbeddingScatterScratch(dev, n, V);
  CallScratch scratch(dev);
  void* sortBuffers = scratch(bytes);
  cudaEmbeddingScatter(dev, int(d), int(id), dptr(idsId, idsOff, n, id), n, dptr(gId, gOff, n * D, d), V, D,
                       dptr(dwId, dwOff, V * D, d), sortBuffers, bytes, add);
  return info.Env().Undefined();
}

// crossEntropyForwardDevice(dtype, xId, xOff, rows, C, idDtype, tId, tOff, ignore, lossId, lseId[, xLd]):
// crossEntropyForward without the host range check (the caller queued indexCheck first); a bad
// target's loss is NaN. xLd (>= C): the logits' row pitch in elements (a padded matmul output).
Napi::Value CrossEntropyForwardDevice(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropy";
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), rows = argInt(info, 3), C = argInt(info, 4);
  DType id = indexArg(info, 5, op);
  int64_t tId = argInt(info, 6), tOff = argInt(info, 7), ignore = argInt(info, 8), lossId = argInt(info, 9),
          lseId = argInt(info, 10);
  const int64_t xLd = info.Length() > 11 ? argInt(info, 11) : C;
  MT_CHECK(rows >= 0 && C >= 0, op, ": negative size");
  MT_CHECK(xLd >= C, op, ": logits row pitch ", xLd, " is below C = ", C);
  int dev = devOf(op, lossId);
  devOf(op, xId, dev);
  devOf(op, tId, dev);
  devOf(op, lseId, dev);
  const DType stat = d == DType::F64 ? DType::F64 : DType::F32;
  // The last row ends at column C: its padding need not exist.
  cudaCrossEntropyForward(dev, int(d), dptr(xId, xOff, rows == 0 ? 0 : (rows - 1) * xLd + C, d), rows, C, int(id),
                          dptr(tId, tOff, rows, id), ignore, dptr(lossId, 0, rows, d), dptr(lseId, 0, rows, stat), xLd);
  return info.Env().Undefined();
}

}  // namespace

void registerCudaIndex(Napi::Object cuda) {
  MT_EXPORT(cuda, "indexCheck", IndexCheck);
  MT_EXPORT(cuda, "embeddingGather", EmbeddingGather);
  MT_EXPORT(cuda, "embeddingScatter", EmbeddingScatter);
  cuda.Set("embeddingGradInto", Napi::Boolean::New(cuda.Env(), true));  // takes dwOff, add
  MT_EXPORT(cuda, "crossEntropyForwardDevice", CrossEntropyForwardDevice);
  cuda.Set("crossEntropyLd", Napi::Boolean::New(cuda.Env(), true));  // forward takes xLd, backward xLd, dxOff, dxLd
}

}  // namespace mt
#endif
