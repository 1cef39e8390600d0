// N-API bindings of the CUDA layer norm, embedding and cross-entropy kernels: the CPU functions'
// arguments and return values (native/cpu/layernorm.cc, embedding.cc, loss.cc). Index tensors are
// copied to the host to be range-checked (and, for the embedding backward, grouped by id), so
// these calls synchronize with the device. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <vector>
#include "cpu/indices.h"
#include "cuda/bindings_nn.h"
#include "cuda/device_memory.h"
#include "cuda/kernels.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

int devOf(const char* op, int64_t id, int dev = -1) {
  int code = storageAt(id).device;
  MT_CHECK(isCudaCode(code), op, ": storage ", id, " is not on a CUDA device");
  MT_CHECK(dev < 0 || code - 1 == dev, op, ": operands on cuda:", dev, " and cuda:", code - 1);
  return code - 1;
}

void* dptr(int64_t id, int64_t elemOff, int64_t count, DType d) {
  size_t item = itemsize(d);
  return cudaDataPtr<uint8_t>(id, elemOff * int64_t(item), count * int64_t(item));
}

// An optional tensor (id 0: absent) on `dev`.
void* optional(const char* op, int64_t id, int64_t off, int64_t n, DType d, int dev) {
  if (id == 0) return nullptr;
  devOf(op, id, dev);
  return dptr(id, off, n, d);
}

DType statOf(DType d) { return d == DType::F64 ? DType::F64 : DType::F32; }

// The indices as int64 on the host.
std::vector<int64_t> hostIndices(const char* op, int dev, DType id, int64_t tId, int64_t tOff, int64_t n) {
  MT_CHECK(id == DType::I32 || id == DType::I64, op, ": indices must be i32 or i64");
  std::vector<int64_t> out(static_cast<size_t>(n));
  if (n == 0) return out;
  if (id == DType::I64) {
    cudaCopyToHost(dev, out.data(), dptr(tId, tOff, n, id), size_t(n) * 8);
  } else {
    std::vector<int32_t> narrow(static_cast<size_t>(n));
    cudaCopyToHost(dev, narrow.data(), dptr(tId, tOff, n, id), size_t(n) * 4);
    for (int64_t i = 0; i < n; i++) out[size_t(i)] = narrow[size_t(i)];
  }
  return out;
}

// layerNormForward(dtype, xId, xOff, wId, wOff, bId, bOff, yId, yOff, meanId, rstdId, rows, cols, eps)
Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), wId = argInt(info, 3), wOff = argInt(info, 4),
          bId = argInt(info, 5), bOff = argInt(info, 6), yId = argInt(info, 7), yOff = argInt(info, 8),
          meanId = argInt(info, 9), rstdId = argInt(info, 10), rows = argInt(info, 11), cols = argInt(info, 12);
  const char* op = "layerNorm";
  int dev = devOf(op, yId);
  devOf(op, xId, dev);
  devOf(op, meanId, dev);
  devOf(op, rstdId, dev);
  cudaLayerNormForward(dev, int(d), dptr(xId, xOff, rows * cols, d), optional(op, wId, wOff, cols, d, dev),
                       optional(op, bId, bOff, cols, d, dev), dptr(yId, yOff, rows * cols, d),
                       dptr(meanId, 0, rows, statOf(d)), dptr(rstdId, 0, rows, statOf(d)), rows, cols, argNum(info, 13));
  return info.Env().Undefined();
}

// layerNormBackward(dtype, xId, xOff, wId, wOff, meanId, rstdId, gId, gOff, dxId, dwId, dbId, rows, cols)
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), wId = argInt(info, 3), wOff = argInt(info, 4),
          meanId = argInt(info, 5), rstdId = argInt(info, 6), gId = argInt(info, 7), gOff = argInt(info, 8),
          dxId = argInt(info, 9), dwId = argInt(info, 10), dbId = argInt(info, 11), rows = argInt(info, 12),
          cols = argInt(info, 13);
  const char* op = "layerNorm backward";
  int dev = devOf(op, xId);
  devOf(op, gId, dev);
  // Partial column sums for dw/db: a scratch storage tagged 'other', back in the cache at once.
  const bool sums = (dwId || dbId) && rows * cols > 0;
  const int64_t scratch =
      sums ? allocStorage(size_t(cudaLayerNormScratch(rows, cols)) * sizeof(double), Tag::Other, dev + 1, false) : 0;
  try {
    cudaLayerNormBackward(dev, int(d), dptr(xId, xOff, rows * cols, d), optional(op, wId, wOff, cols, d, dev),
                          optional(op, meanId, 0, rows, statOf(d), dev), optional(op, rstdId, 0, rows, statOf(d), dev),
                          dptr(gId, gOff, rows * cols, d), optional(op, dxId, 0, rows * cols, d, dev),
                          optional(op, dwId, 0, cols, d, dev), optional(op, dbId, 0, cols, d, dev), rows, cols,
                          scratch ? static_cast<double*>(storageAt(scratch).ptr) : nullptr);
  } catch (...) {
    if (scratch) freeStorage(scratch);
    throw;
  }
  if (scratch) freeStorage(scratch);
  return info.Env().Undefined();
}

// embeddingForward(dtype, idxDtype, idsId, idsOff, n, wId, wOff, V, D, outId, outOff) -> -1 or
// the position of the first id outside [0, V) (then nothing is written).
Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0))), id = toDType(int(argInt(info, 1)));
  int64_t idsId = argInt(info, 2), idsOff = argInt(info, 3), n = argInt(info, 4), wId = argInt(info, 5),
          wOff = argInt(info, 6), V = argInt(info, 7), D = argInt(info, 8), outId = argInt(info, 9),
          outOff = argInt(info, 10);
  int dev = devOf("embedding", outId);
  devOf("embedding", idsId, dev);
  devOf("embedding", wId, dev);
  std::vector<int64_t> ids = hostIndices("embedding", dev, id, idsId, idsOff, n);
  int64_t bad = firstOutOfRange(ids.data(), n, V, kNoIgnore);
  if (bad < 0 && n > 0 && D > 0)
    cudaEmbeddingForward(dev, int(d), int(id), dptr(idsId, idsOff, n, id), n, dptr(wId, wOff, V * D, d), D,
                         dptr(outId, outOff, n * D, d));
  return Napi::Number::New(info.Env(), double(bad));
}

// embeddingBackward(dtype, idxDtype, idsId, idsOff, n, gId, gOff, dwId, V, D): dw is fresh [V, D].
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0))), id = toDType(int(argInt(info, 1)));
  int64_t idsId = argInt(info, 2), idsOff = argInt(info, 3), n = argInt(info, 4), gId = argInt(info, 5),
          gOff = argInt(info, 6), dwId = argInt(info, 7), V = argInt(info, 8), D = argInt(info, 9);
  if (V * D == 0) return info.Env().Undefined();
  int dev = devOf("embedding backward", dwId);
  devOf("embedding backward", gId, dev);
  std::vector<int64_t> ids = hostIndices("embedding backward", dev, id, idsId, idsOff, n);
  MT_CHECK(firstOutOfRange(ids.data(), n, V, kNoIgnore) < 0, "embedding backward: id out of range");
  // Positions grouped by id (counting sort, as on the CPU), then [order | start] uploaded at once.
  std::vector<int64_t> table(static_cast<size_t>(n + V + 1), 0);
  int64_t* order = table.data();
  int64_t* start = table.data() + n;
  for (int64_t i = 0; i < n; i++) start[ids[size_t(i)] + 1]++;
  for (int64_t v = 0; v < V; v++) start[v + 1] += start[v];
  std::vector<int64_t> fill(start, start + V);
  for (int64_t i = 0; i < n; i++) order[fill[size_t(ids[size_t(i)])]++] = i;
  int64_t scratch = allocStorage(table.size() * 8, Tag::Other, dev + 1, false);
  try {
    auto* dTable = static_cast<int64_t*>(storageAt(scratch).ptr);
    cudaCopyFromHost(dev, dTable, table.data(), table.size() * 8);
    cudaEmbeddingBackward(dev, int(d), dTable, dTable + n, dptr(gId, gOff, n * D, d), V, D, dptr(dwId, 0, V * D, d));
  } catch (...) {
    freeStorage(scratch);
    throw;
  }
  freeStorage(scratch);  // reused only by work queued after this kernel
  return info.Env().Undefined();
}

// crossEntropyForward(dtype, xId, xOff, rows, C, idxDtype, tId, tOff, ignore, lossId, lseId) ->
// rows not ignored, or -(1 + position) of the first target out of range.
Napi::Value CrossEntropyForward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), rows = argInt(info, 3), C = argInt(info, 4);
  DType id = toDType(int(argInt(info, 5)));
  int64_t tId = argInt(info, 6), tOff = argInt(info, 7), ignore = argInt(info, 8), lossId = argInt(info, 9),
          lseId = argInt(info, 10);
  const char* op = "crossEntropy";
  int dev = devOf(op, lossId);
  devOf(op, xId, dev);
  devOf(op, tId, dev);
  devOf(op, lseId, dev);
  std::vector<int64_t> t = hostIndices(op, dev, id, tId, tOff, rows);
  int64_t bad = firstOutOfRange(t.data(), rows, C, ignore);
  if (bad >= 0) return Napi::Number::New(info.Env(), -double(bad + 1));
  int64_t count = 0;
  for (int64_t v : t) count += v != ignore;
  cudaCrossEntropyForward(dev, int(d), dptr(xId, xOff, rows * C, d), rows, C, int(id), dptr(tId, tOff, rows, id), ignore,
                          dptr(lossId, 0, rows, d), dptr(lseId, 0, rows, statOf(d)));
  return Napi::Number::New(info.Env(), double(count));
}

// crossEntropyBackward(dtype, xId, xOff, rows, C, idxDtype, tId, tOff, ignore, lseId, gId, gOff,
//                      gStride, scale, dxId)
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), rows = argInt(info, 3), C = argInt(info, 4);
  DType id = toDType(int(argInt(info, 5)));
  int64_t tId = argInt(info, 6), tOff = argInt(info, 7), ignore = argInt(info, 8), lseId = argInt(info, 9),
          gId = argInt(info, 10), gOff = argInt(info, 11), gStride = argInt(info, 12);
  double scale = argNum(info, 13);
  int64_t dxId = argInt(info, 14);
  MT_CHECK(gStride == 0 || gStride == 1, "crossEntropy backward: gradient stride must be 0 or 1");
  if (rows * C == 0) return info.Env().Undefined();
  const char* op = "crossEntropy backward";
  int dev = devOf(op, dxId);
  devOf(op, xId, dev);
  devOf(op, tId, dev);
  devOf(op, gId, dev);
  MT_CHECK(id == DType::I32 || id == DType::I64, op, ": indices must be i32 or i64");
  cudaCrossEntropyBackward(dev, int(d), dptr(xId, xOff, rows * C, d), rows, C, int(id), dptr(tId, tOff, rows, id), ignore,
                           dptr(lseId, 0, rows, statOf(d)), dptr(gId, gOff, gStride ? rows : 1, d), gStride, scale,
                           dptr(dxId, 0, rows * C, d));
  return info.Env().Undefined();
}

// random(kind, dtype, id, off, n, seed, offset, start, a, b): uniform and dropout masks only
// (normal samples are drawn on the CPU and copied by the TypeScript side).
Napi::Value Random(const Napi::CallbackInfo& info) {
  int kind = int(argInt(info, 0));
  DType d = toDType(int(argInt(info, 1)));
  int64_t id = argInt(info, 2), off = argInt(info, 3), n = argInt(info, 4);
  uint64_t seed = uint64_t(argInt(info, 5)), offset = uint64_t(argInt(info, 6)), start = uint64_t(argInt(info, 7));
  int dev = devOf("random", id);
  cudaRandomUniform(dev, kind, int(d), dptr(id, off, n, d), n, seed, offset + start, argNum(info, 8), argNum(info, 9));
  return info.Env().Undefined();
}

}  // namespace

void registerCudaNn(Napi::Object cuda) {
  MT_EXPORT(cuda, "random", Random);
  MT_EXPORT(cuda, "layerNormForward", LayerNormForward);
  MT_EXPORT(cuda, "layerNormBackward", LayerNormBackward);
  MT_EXPORT(cuda, "embeddingForward", EmbeddingForward);
  MT_EXPORT(cuda, "embeddingBackward", EmbeddingBackward);
  MT_EXPORT(cuda, "crossEntropyForward", CrossEntropyForward);
  MT_EXPORT(cuda, "crossEntropyBackward", CrossEntropyBackward);
}

}  // namespace mt
#endif
