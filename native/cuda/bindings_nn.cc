// N-API bindings of the CUDA layer norm, cross-entropy backward and random kernels, with the CPU
// functions' arguments (native/cpu/layernorm.cc, loss.cc). The index-reading forwards (embedding
// gather/scatter, cross-entropy forward) check their indices on the device: bindings_index.cc.
// CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include "cuda/bindings_nn.h"
#include "cuda/call_scratch.h"
#include "cuda/device_memory.h"
#include "cuda/kernels.h"
#include "cuda/operands.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

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
  cudaLayerNormForward(dev, int(d), dptr(xId, xOff, rows * cols, d), optionalPtr(op, wId, wOff, cols, d, dev),
                       optionalPtr(op, bId, bOff, cols, d, dev), dptr(yId, yOff, rows * cols, d),
                       dptr(meanId, 0, rows, statOf(d)), dptr(rstdId, 0, rows, statOf(d)), rows, cols, argNum(info, 13));
  return info.Env().Undefined();
}

// layerNormBackward(dtype, xId, xOff, wId, wOff, meanId, rstdId, gId, gOff, dxId, dwId, dbId, rows, cols
//                   [, dwOff, dbOff, addW, addB[, dxOff, addX]]): native/cpu/layernorm.cc's arguments.
Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), wId = argInt(info, 3), wOff = argInt(info, 4),
          meanId = argInt(info, 5), rstdId = argInt(info, 6), gId = argInt(info, 7), gOff = argInt(info, 8),
          dxId = argInt(info, 9), dwId = argInt(info, 10), dbId = argInt(info, 11), rows = argInt(info, 12),
          cols = argInt(info, 13);
  const bool into = info.Length() > 14;
  const int64_t dwOff = into ? argInt(info, 14) : 0, dbOff = into ? argInt(info, 15) : 0;
  const bool addW = into && argBool(info, 16), addB = into && argBool(info, 17);
  const bool intoX = info.Length() > 18;
  const int64_t dxOff = intoX ? argInt(info, 18) : 0;
  const bool addX = intoX && argBool(info, 19);
  const char* op = "layerNorm backward";
  MT_CHECK(dwOff >= 0 && dbOff >= 0 && dxOff >= 0, op, ": negative offset (dw ", dwOff, ", db ", dbOff, ", dx ", dxOff, ")");
  MT_CHECK(!addX || dxId, op, ": addX without dx");
  int dev = devOf(op, xId);
  devOf(op, gId, dev);
  // Partial column sums for dw/db (call_scratch.h).
  const bool sums = (dwId || dbId) && rows * cols > 0;
  CallScratch scratch(dev);
  void* partial = sums ? scratch(cudaLayerNormScratchBytes(int(d), rows, cols)) : nullptr;
  cudaLayerNormBackward(dev, int(d), dptr(xId, xOff, rows * cols, d), optionalPtr(op, wId, wOff, cols, d, dev),
                          optionalPtr(op, meanId, 0, rows, statOf(d), dev), optionalPtr(op, rstdId, 0, rows, statOf(d), dev),
                          dptr(gId, gOff, rows * cols, d), optionalPtr(op, dxId, dxOff, rows * cols, d, dev),
                          optionalPtr(op, dwId, dwOff, cols, d, dev), optionalPtr(op, dbId, dbOff, cols, d, dev), rows, cols,
                          partial, addW, addB, addX);
  return info.Env().Undefined();
}

// crossEntropyBackward(dtype, xId, xOff, rows, C, idxDtype, tId, tOff, ignore, lseId, gId, gOff,
//                      gStride, scale, dxId[, xLd, dxOff, dxLd]): xLd, dxLd (>= C) the row pitches of the
// logits and of their gradient in elements (a padded matmul output; dx's padding is not written).
Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), rows = argInt(info, 3), C = argInt(info, 4);
  DType id = toDType(int(argInt(info, 5)));
  int64_t tId = argInt(info, 6), tOff = argInt(info, 7), ignore = argInt(info, 8), lseId = argInt(info, 9),
          gId = argInt(info, 10), gOff = argInt(info, 11), gStride = argInt(info, 12);
  double scale = argNum(info, 13);
  int64_t dxId = argInt(info, 14);
  const bool pitched = info.Length() > 15;
  const int64_t xLd = pitched ? argInt(info, 15) : C, dxOff = pitched ? argInt(info, 16) : 0,
                dxLd = pitched ? argInt(info, 17) : C;
  MT_CHECK(gStride == 0 || gStride == 1, "crossEntropy backward: gradient stride must be 0 or 1");
  const char* op = "crossEntropy backward";
  MT_CHECK(rows >= 0 && C >= 0 && dxOff >= 0, op, ": negative size or offset");
  MT_CHECK(xLd >= C && dxLd >= C, op, ": row pitches ", xLd, " (logits) and ", dxLd, " (gradient) must be at least C = ", C);
  if (rows * C == 0) return info.Env().Undefined();
  int dev = devOf(op, dxId);
  devOf(op, xId, dev);
  devOf(op, tId, dev);
  devOf(op, gId, dev);
  MT_CHECK(id == DType::I32 || id == DType::I64, op, ": indices must be i32 or i64");
  // The last row ends at column C: its padding need not exist.
  cudaCrossEntropyBackward(dev, int(d), dptr(xId, xOff, (rows - 1) * xLd + C, d), rows, C, int(id),
                           dptr(tId, tOff, rows, id), ignore, dptr(lseId, 0, rows, statOf(d)),
                           dptr(gId, gOff, gStride ? rows : 1, d), gStride, scale, dptr(dxId, dxOff, (rows - 1) * dxLd + C, d),
                           xLd, dxLd);
  return info.Env().Undefined();
}

// random(kind, dtype, id, off, n, seed, offset, start, a, b[, baseId, baseOff]): uniform and dropout
// masks only (normal samples are drawn on the CPU and copied by the TypeScript side). baseId != 0:
// the device's generator base (2 x u64), offset then relative to it (inside a CUDA graph).
Napi::Value Random(const Napi::CallbackInfo& info) {
  int kind = int(argInt(info, 0));
  DType d = toDType(int(argInt(info, 1)));
  int64_t id = argInt(info, 2), off = argInt(info, 3), n = argInt(info, 4);
  uint64_t seed = uint64_t(argInt(info, 5)), offset = uint64_t(argInt(info, 6)), start = uint64_t(argInt(info, 7));
  int dev = devOf("random", id);
  int64_t baseId = info.Length() > 10 ? argInt(info, 10) : 0;
  auto* base = static_cast<const uint64_t*>(optionalPtr("random", baseId, baseId ? argInt(info, 11) : 0, 2, DType::I64, dev));
  cudaRandomUniform(dev, kind, int(d), dptr(id, off, n, d), n, seed, offset + start, base, argNum(info, 8),
                    argNum(info, 9));
  return info.Env().Undefined();
}

// randomSetBase(id, off, seed, offset): queues base = {seed, offset} (2 x u64 at element off of an
// i64 storage) on its device's compute stream.
Napi::Value RandomSetBase(const Napi::CallbackInfo& info) {
  int64_t id = argInt(info, 0), off = argInt(info, 1), seed = argInt(info, 2), offset = argInt(info, 3);
  MT_CHECK(seed >= 0 && offset >= 0, "randomSetBase: seed and offset must be non-negative, got ", seed, ", ", offset);
  int dev = devOf("randomSetBase", id);
  cudaRandomSetBase(dev, static_cast<uint64_t*>(dptr(id, off, 2, DType::I64)), uint64_t(seed), uint64_t(offset));
  return info.Env().Undefined();
}

}  // namespace

void registerCudaNn(Napi::Object cuda) {
  MT_EXPORT(cuda, "random", Random);
  MT_EXPORT(cuda, "randomSetBase", RandomSetBase);
  MT_EXPORT(cuda, "layerNormForward", LayerNormForward);
  MT_EXPORT(cuda, "layerNormBackward", LayerNormBackward);
  cuda.Set("layerNormGradInto", Napi::Boolean::New(cuda.Env(), true));  // takes dwOff, dbOff, addW, addB
  cuda.Set("layerNormDxInto", Napi::Boolean::New(cuda.Env(), true));    // takes dxOff, addX (args 18, 19)
  MT_EXPORT(cuda, "crossEntropyBackward", CrossEntropyBackward);
}

}  // namespace mt
#endif
