// N-API bindings of the CUDA image ops — conv2d (cuDNN or the direct kernels), batch norm and
// pooling — with the arguments of the CPU functions of the same names (native/cpu/conv.cc,
// batchnorm.cc, pool.cc), so the TypeScript ops only pick the kernel table by device.
// Conv2d: f32/bf16/f16 through cuDNN; f64 (the CPU's plain-loop dtype), views at offsets cuDNN
// cannot take, and problems for which cuDNN offers no accepted algorithm run the direct kernels;
// MESHTRAIN_CUDA_CONV=direct forces them (no cuDNN needed). CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <cstdlib>
#include <cstring>
#include <vector>
#include "cuda/bindings_image.h"
#include "cuda/conv.h"
#include "cuda/device_memory.h"
#include "cuda/image_ops.h"
#include "cuda/matmul.h"
#include "cuda/operands.h"
#include "tensor/storage.h"
#include "util/args.h"
#include "util/strided.h"

namespace mt {
namespace {

// An activation argument: storage id, element offset and [N, C, H, W] element strides.
struct Act {
  int64_t id, off;
  std::vector<int64_t> strides;
};

Act readAct(const Napi::CallbackInfo& info, size_t idArg, size_t stridesArg, const char* op, const char* what) {
  Act a{argInt(info, idArg), argInt(info, idArg + 1), argInts(info, stridesArg)};
  MT_CHECK(a.strides.size() == 4, op, ": ", what, " strides must have 4 values [N, C, H, W], got ", a.strides.size());
  for (int64_t s : a.strides) MT_CHECK(s >= 0, op, ": negative ", what, " strides are not supported");
  return a;
}

void* actPtr(const char* op, const Act& a, const int64_t (&dims)[4], DType d, int dev) {
  devOf(op, a.id, dev);
  return dptr(a.id, a.off, stridedSpan(dims, a.strides.data(), 4), d);
}

// ---- conv2d ----

const char* convName(CudaConvProp p) {
  return p == kConvForward ? "conv2dForward" : p == kConvBackwardData ? "conv2dBackwardData" : "conv2dBackwardWeights";
}

CudaConvShape readConvShape(const Napi::CallbackInfo& info, size_t nchw, size_t okk, size_t stridePad) {
  CudaConvShape s{};
  s.N = argInt(info, nchw), s.C = argInt(info, nchw + 1), s.H = argInt(info, nchw + 2), s.W = argInt(info, nchw + 3);
  s.O = argInt(info, okk), s.kh = argInt(info, okk + 1), s.kw = argInt(info, okk + 2);
  s.sh = argInt(info, stridePad), s.sw = argInt(info, stridePad + 1);
  s.ph = argInt(info, stridePad + 2), s.pw = argInt(info, stridePad + 3);
  return s;
}

void checkConv(CudaConvProp p, DType d, const CudaConvShape& s) {
  MT_CHECK(d == DType::F32 || d == DType::BF16 || d == DType::F16 || d == DType::F64, convName(p), ": dtype ",
           dtypeNameOf(d), " is not supported (f32, bf16, f16, f64)");
  MT_CHECK(s.N > 0 && s.C > 0 && s.H > 0 && s.W > 0 && s.O > 0 && s.kh > 0 && s.kw > 0, convName(p),
           ": sizes must be positive (", s.describe(), ")");
  MT_CHECK(s.sh > 0 && s.sw > 0 && s.ph >= 0 && s.pw >= 0, convName(p), ": stride ", s.sh, "x", s.sw,
           " must be positive and padding ", s.ph, "x", s.pw, " non-negative");
  MT_CHECK(s.H + 2 * s.ph >= s.kh && s.W + 2 * s.pw >= s.kw, convName(p), ": kernel ", s.kh, "x", s.kw,
           " is larger than the padded input ", s.H + 2 * s.ph, "x", s.W + 2 * s.pw);
}

bool directForced() {
  const char* v = std::getenv("MESHTRAIN_CUDA_CONV");
  return v && std::strcmp(v, "direct") == 0;
}

// cuDNN where it applies (workspace from the caching allocator, tagged 'other', back in the cache
// once the call has queued: later work on the same stream is what reuses it), else direct.
void runConv(CudaConvProp prop, DType d, int dev, const CudaConvShape& s, const void* a, const int64_t* as, void* w,
             void* b, const int64_t* bs) {
  if (d != DType::F64 && !directForced()) {
    std::vector<int64_t> scratch;
    bool done = false;
    try {
      done = cudnnConv(dev, prop, int(d), s, a, as, w, b, bs, [&](int64_t bytes) {
        scratch.push_back(allocStorage(size_t(bytes), Tag::Other, dev + 1, false));
        return storageAt(scratch.back()).ptr;
      });
    } catch (...) {
      for (int64_t id : scratch) freeStorage(id);
      throw;
    }
    for (int64_t id : scratch) freeStorage(id);
    if (done) return;
  }
  cudaConvDirect(dev, prop, int(d), s, a, as, w, b, bs);
}

DType biasTypeOf(DType d) { return d == DType::F64 ? DType::F64 : DType::F32; }

// conv2dForward(dtype, xId, xOff, xStrides, N, C, H, W, wId, wOff, O, kh, kw, biasId, biasOff,
//               outId, outOff, outStrides, strideH, strideW, padH, padW)
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  const CudaConvProp P = kConvForward;
  const char* op = convName(P);
  DType d = toDType(int(argInt(info, 0)));
  CudaConvShape s = readConvShape(info, 4, 10, 18);
  checkConv(P, d, s);
  Act x = readAct(info, 1, 3, op, "input"), y = readAct(info, 15, 17, op, "output");
  int dev = devOf(op, y.id);
  void* xp = actPtr(op, x, {s.N, s.C, s.H, s.W}, d, dev);
  void* yp = actPtr(op, y, {s.N, s.O, s.OH(), s.OW()}, d, dev);
  devOf(op, argInt(info, 8), dev);
  void* wp = dptr(argInt(info, 8), argInt(info, 9), s.O * s.C * s.kh * s.kw, d);
  const int64_t biasId = argInt(info, 13);
  void* bp = nullptr;
  if (biasId) {
    devOf(op, biasId, dev);
    bp = dptr(biasId, argInt(info, 14), s.O, biasTypeOf(d));
  }
  runConv(P, d, dev, s, xp, x.strides.data(), wp, yp, y.strides.data());
  if (bp) cudaConvAddBias(dev, int(d), yp, y.strides.data(), s.N, s.O, s.OH(), s.OW(), int(biasTypeOf(d)), bp);
  return info.Env().Undefined();
}

// conv2dBackwardData(dtype, gradOutId, gradOutOff, gradOutStrides, wId, wOff, gradInId, gradInOff,
//                    gradInStrides, N, C, H, W, O, kh, kw, strideH, strideW, padH, padW)
Napi::Value Conv2dBackwardData(const Napi::CallbackInfo& info) {
  const CudaConvProp P = kConvBackwardData;
  const char* op = convName(P);
  DType d = toDType(int(argInt(info, 0)));
  CudaConvShape s = readConvShape(info, 9, 13, 16);
  checkConv(P, d, s);
  Act gy = readAct(info, 1, 3, op, "gradOut"), gx = readAct(info, 6, 8, op, "gradIn");
  int dev = devOf(op, gx.id);
  void* gyp = actPtr(op, gy, {s.N, s.O, s.OH(), s.OW()}, d, dev);
  void* gxp = actPtr(op, gx, {s.N, s.C, s.H, s.W}, d, dev);
  devOf(op, argInt(info, 4), dev);
  void* wp = dptr(argInt(info, 4), argInt(info, 5), s.O * s.C * s.kh * s.kw, d);
  runConv(P, d, dev, s, gyp, gy.strides.data(), wp, gxp, gx.strides.data());
  return info.Env().Undefined();
}

// conv2dBackwardWeights(dtype, xId, xOff, xStrides, gradOutId, gradOutOff, gradOutStrides,
//                       gradWId, gradWOff, gradBiasId, gradBiasOff, N, C, H, W, O, kh, kw,
//                       strideH, strideW, padH, padW)
Napi::Value Conv2dBackwardWeights(const Napi::CallbackInfo& info) {
  const CudaConvProp P = kConvBackwardWeights;
  const char* op = convName(P);
  DType d = toDType(int(argInt(info, 0)));
  CudaConvShape s = readConvShape(info, 11, 15, 18);
  checkConv(P, d, s);
  Act x = readAct(info, 1, 3, op, "input"), gy = readAct(info, 4, 6, op, "gradOut");
  int dev = devOf(op, gy.id);
  void* xp = actPtr(op, x, {s.N, s.C, s.H, s.W}, d, dev);
  void* gyp = actPtr(op, gy, {s.N, s.O, s.OH(), s.OW()}, d, dev);
  devOf(op, argInt(info, 7), dev);
  void* gwp = dptr(argInt(info, 7), argInt(info, 8), s.O * s.C * s.kh * s.kw, d);
  runConv(P, d, dev, s, xp, x.strides.data(), gwp, gyp, gy.strides.data());
  const int64_t gbId = argInt(info, 9);
  if (gbId) {
    devOf(op, gbId, dev);
    void* gbp = dptr(gbId, argInt(info, 10), s.O, biasTypeOf(d));
    cudaConvBiasGrad(dev, int(d), gyp, gy.strides.data(), s.N, s.O, s.OH(), s.OW(), int(biasTypeOf(d)), gbp);
  }
  return info.Env().Undefined();
}

// ---- batch norm ----

// A [C] statistics vector (f64 for f64 inputs, f32 otherwise) or null for id 0.
void* stat(const char* op, const Napi::CallbackInfo& info, size_t idArg, int64_t C, DType d, int dev) {
  const int64_t id = argInt(info, idArg);
  if (!id) return nullptr;
  devOf(op, id, dev);
  return dptr(id, argInt(info, idArg + 1), C, biasTypeOf(d));
}

// Batch norm's scratch: storages tagged 'other', freed once the call has queued its kernels
// (later work on the same stream is what reuses them, as for cuDNN's workspaces).
struct BnScratch {
  int dev;
  std::vector<int64_t> ids;
  ~BnScratch() {
    for (int64_t id : ids) freeStorage(id);
  }
  CudaBnScratch fn() {
    return [this](int64_t bytes) {
      ids.push_back(allocStorage(size_t(bytes), Tag::Other, dev + 1, false));
      return storageAt(ids.back()).ptr;
    };
  }
};

void checkGeometry(const char* op, int64_t outer, int64_t C, int64_t inner) {
  MT_CHECK(outer >= 0 && C > 0 && inner >= 0, op, ": bad geometry [", outer, ", ", C, ", ", inner, "]");
}

// batchNormForward(dtype, xId, xOff, outId, outOff, outer, C, inner, weightId, weightOff,
//                  biasId, biasOff, meanId, meanOff, invstdId, invstdOff, runMeanId, runMeanOff,
//                  runVarId, runVarOff, training, momentum, eps)
Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  const char* op = "batchNormForward";
  DType d = toDType(int(argInt(info, 0)));
  const int64_t outer = argInt(info, 5), C = argInt(info, 6), inner = argInt(info, 7);
  checkGeometry(op, outer, C, inner);
  const int64_t n = outer * C * inner;
  const int64_t outId = argInt(info, 3);
  int dev = devOf(op, outId);
  devOf(op, argInt(info, 1), dev);
  void* x = dptr(argInt(info, 1), argInt(info, 2), n, d);
  void* y = dptr(outId, argInt(info, 4), n, d);
  void* mean = stat(op, info, 12, C, d, dev);
  void* invstd = stat(op, info, 14, C, d, dev);
  void* runMean = stat(op, info, 16, C, d, dev);
  void* runVar = stat(op, info, 18, C, d, dev);
  const bool training = argBool(info, 20);
  MT_CHECK(mean && invstd, op, ": mean and invstd outputs are required");
  MT_CHECK(training || (runMean && runVar), op, ": evaluation needs running statistics");
  MT_CHECK(!training || outer * inner > 1, op, ": training needs more than one value per channel");
  BnScratch scratch{dev, {}};
  cudaBatchNormForward(dev, int(d), x, y, outer, C, inner, stat(op, info, 8, C, d, dev), stat(op, info, 10, C, d, dev),
                       mean, invstd, runMean, runVar, training, argNum(info, 21), argNum(info, 22), scratch.fn());
  return info.Env().Undefined();
}

// batchNormBackward(dtype, gradOutId, gradOutOff, xId, xOff, meanId, meanOff, invstdId,
//                   invstdOff, weightId, weightOff, gradInId, gradInOff, gradWeightId,
//                   gradWeightOff, gradBiasId, gradBiasOff, outer, C, inner, training)
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  const char* op = "batchNormBackward";
  DType d = toDType(int(argInt(info, 0)));
  const int64_t outer = argInt(info, 17), C = argInt(info, 18), inner = argInt(info, 19);
  checkGeometry(op, outer, C, inner);
  const int64_t n = outer * C * inner;
  int dev = devOf(op, argInt(info, 1));
  void* gy = dptr(argInt(info, 1), argInt(info, 2), n, d);
  devOf(op, argInt(info, 3), dev);
  void* x = dptr(argInt(info, 3), argInt(info, 4), n, d);
  void* mean = stat(op, info, 5, C, d, dev);
  void* invstd = stat(op, info, 7, C, d, dev);
  MT_CHECK(mean && invstd, op, ": mean and invstd are required");
  const int64_t gxId = argInt(info, 11);
  void* gx = nullptr;
  if (gxId) {
    devOf(op, gxId, dev);
    gx = dptr(gxId, argInt(info, 12), n, d);
  }
  BnScratch scratch{dev, {}};
  cudaBatchNormBackward(dev, int(d), gy, x, mean, invstd, stat(op, info, 9, C, d, dev), gx, stat(op, info, 13, C, d, dev),
                        stat(op, info, 15, C, d, dev), outer, C, inner, argBool(info, 20), scratch.fn());
  return info.Env().Undefined();
}

// ---- pooling ----

void checkPool(const char* op, const CudaPoolShape& s) {
  MT_CHECK(s.N >= 0 && s.C >= 0 && s.H > 0 && s.W > 0 && s.OH > 0 && s.OW > 0, op, ": bad sizes N ", s.N, " C ", s.C,
           " H ", s.H, " W ", s.W, " OH ", s.OH, " OW ", s.OW);
  MT_CHECK(s.H * s.W <= 0x7fffffff, op, ": planes over 2^31 elements are not supported");
}

CudaPoolShape readPool(const Napi::CallbackInfo& info, size_t at) {
  return CudaPoolShape{argInt(info, at),     argInt(info, at + 1), argInt(info, at + 2),
                       argInt(info, at + 3), argInt(info, at + 4), argInt(info, at + 5)};
}

// maxPool2dForward(dtype, xId, xOff, xStrides, outId, outOff, outStrides, idxId, idxOff,
//                  N, C, H, W, OH, OW, kh, kw, strideH, strideW, padH, padW)
Napi::Value MaxPool2dForward(const Napi::CallbackInfo& info) {
  const char* op = "maxPool2dForward";
  DType d = toDType(int(argInt(info, 0)));
  CudaPoolShape s = readPool(info, 9);
  s.kh = argInt(info, 15), s.kw = argInt(info, 16), s.sh = argInt(info, 17), s.sw = argInt(info, 18);
  s.ph = argInt(info, 19), s.pw = argInt(info, 20);
  checkPool(op, s);
  MT_CHECK(s.kh > 0 && s.kw > 0 && s.sh > 0 && s.sw > 0 && s.ph >= 0 && s.pw >= 0 && 2 * s.ph <= s.kh &&
               2 * s.pw <= s.kw,
           op, ": bad kernel ", s.kh, "x", s.kw, " stride ", s.sh, "x", s.sw, " padding ", s.ph, "x", s.pw);
  MT_CHECK((s.OH - 1) * s.sh - s.ph < s.H && (s.OW - 1) * s.sw - s.pw < s.W, op, ": the output is too large");
  Act x = readAct(info, 1, 3, op, "input"), y = readAct(info, 4, 6, op, "output");
  int dev = devOf(op, y.id);
  const int64_t out[4] = {s.N, s.C, s.OH, s.OW};
  void* xp = actPtr(op, x, {s.N, s.C, s.H, s.W}, d, dev);
  void* yp = actPtr(op, y, {s.N, s.C, s.OH, s.OW}, d, dev);
  const int64_t idxId = argInt(info, 7);
  devOf(op, idxId, dev);
  auto* idx = static_cast<int32_t*>(dptr(idxId, argInt(info, 8), stridedSpan(out, y.strides.data(), 4), DType::I32));
  cudaMaxPoolForward(dev, int(d), s, xp, x.strides.data(), yp, y.strides.data(), idx);
  return info.Env().Undefined();
}

// maxPool2dBackward(dtype, gradOutId, gradOutOff, gradOutStrides, idxId, idxOff, idxStrides,
//                   gradInId, gradInOff, gradInStrides, N, C, H, W, OH, OW, kh, kw,
//                   strideH, strideW, padH, padW)
Napi::Value MaxPool2dBackward(const Napi::CallbackInfo& info) {
  const char* op = "maxPool2dBackward";
  DType d = toDType(int(argInt(info, 0)));
  CudaPoolShape s = readPool(info, 10);
  // The window geometry (the CPU's binding needs none): each input gathers from its windows.
  MT_CHECK(info.Length() >= 22, op, ": needs the window geometry kh, kw, strideH, strideW, padH, padW after OW");
  s.kh = argInt(info, 16), s.kw = argInt(info, 17), s.sh = argInt(info, 18), s.sw = argInt(info, 19);
  s.ph = argInt(info, 20), s.pw = argInt(info, 21);
  checkPool(op, s);
  MT_CHECK(s.kh > 0 && s.kw > 0 && s.sh > 0 && s.sw > 0 && s.ph >= 0 && s.pw >= 0, op, ": bad kernel ", s.kh, "x",
           s.kw, " stride ", s.sh, "x", s.sw, " padding ", s.ph, "x", s.pw);
  Act gy = readAct(info, 1, 3, op, "gradOut"), ix = readAct(info, 4, 6, op, "index"),
      gx = readAct(info, 7, 9, op, "gradIn");
  int dev = devOf(op, gx.id);
  void* gyp = actPtr(op, gy, {s.N, s.C, s.OH, s.OW}, d, dev);
  auto* idx = static_cast<const int32_t*>(actPtr(op, ix, {s.N, s.C, s.OH, s.OW}, DType::I32, dev));
  void* gxp = actPtr(op, gx, {s.N, s.C, s.H, s.W}, d, dev);
  cudaMaxPoolBackward(dev, int(d), s, gyp, gy.strides.data(), idx, ix.strides.data(), gxp, gx.strides.data());
  return info.Env().Undefined();
}

// adaptiveAvgPool2dForward(dtype, xId, xOff, xStrides, outId, outOff, outStrides, N, C, H, W, OH, OW)
Napi::Value AdaptiveAvgPool2dForward(const Napi::CallbackInfo& info) {
  const char* op = "adaptiveAvgPool2dForward";
  DType d = toDType(int(argInt(info, 0)));
  CudaPoolShape s = readPool(info, 7);
  checkPool(op, s);
  Act x = readAct(info, 1, 3, op, "input"), y = readAct(info, 4, 6, op, "output");
  int dev = devOf(op, y.id);
  void* xp = actPtr(op, x, {s.N, s.C, s.H, s.W}, d, dev);
  void* yp = actPtr(op, y, {s.N, s.C, s.OH, s.OW}, d, dev);
  cudaAdaptiveAvgPoolForward(dev, int(d), s, xp, x.strides.data(), yp, y.strides.data());
  return info.Env().Undefined();
}

// adaptiveAvgPool2dBackward(dtype, gradOutId, gradOutOff, gradOutStrides, gradInId, gradInOff,
//                           gradInStrides, N, C, H, W, OH, OW)
Napi::Value AdaptiveAvgPool2dBackward(const Napi::CallbackInfo& info) {
  const char* op = "adaptiveAvgPool2dBackward";
  DType d = toDType(int(argInt(info, 0)));
  CudaPoolShape s = readPool(info, 7);
  checkPool(op, s);
  Act gy = readAct(info, 1, 3, op, "gradOut"), gx = readAct(info, 4, 6, op, "gradIn");
  int dev = devOf(op, gx.id);
  void* gyp = actPtr(op, gy, {s.N, s.C, s.OH, s.OW}, d, dev);
  void* gxp = actPtr(op, gx, {s.N, s.C, s.H, s.W}, d, dev);
  cudaAdaptiveAvgPoolBackward(dev, int(d), s, gyp, gy.strides.data(), gxp, gx.strides.data());
  return info.Env().Undefined();
}

}  // namespace

void registerCudaImage(Napi::Object cuda) {
  MT_EXPORT(cuda, "conv2dForward", Conv2dForward);
  MT_EXPORT(cuda, "conv2dBackwardData", Conv2dBackwardData);
  MT_EXPORT(cuda, "conv2dBackwardWeights", Conv2dBackwardWeights);
  MT_EXPORT(cuda, "batchNormForward", BatchNormForward);
  MT_EXPORT(cuda, "batchNormBackward", BatchNormBackward);
  MT_EXPORT(cuda, "maxPool2dForward", MaxPool2dForward);
  MT_EXPORT(cuda, "maxPool2dBackward", MaxPool2dBackward);
  MT_EXPORT(cuda, "adaptiveAvgPool2dForward", AdaptiveAvgPool2dForward);
  MT_EXPORT(cuda, "adaptiveAvgPool2dBackward", AdaptiveAvgPool2dBackward);
}

}  // namespace mt
#endif
