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
#include "cuda/call_scratch.h"
#include "cuda/conv.h"
#include "cuda/device_memory.h"
#include "cuda/image_ops.h"
#include "cuda/kernels.h"
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

// One binding's arguments: the dtype first, then operands in the order the binding lists them,
// each checked to be on the call's device (that of the operand passed to `on`) and in bounds.
struct ImageArgs {
  const Napi::CallbackInfo& info;
  const char* op;
  DType d;
  int dev = -1;

  ImageArgs(const Napi::CallbackInfo& info, const char* op) : info(info), op(op), d(toDType(int(argInt(info, 0)))) {}

  int64_t num(size_t i) const { return argInt(info, i); }

  // An activation: id at `at`, element offset, then its [N, C, H, W] strides.
  Act act(size_t at, const char* what) const {
    Act a{argInt(info, at), argInt(info, at + 1), argInts(info, at + 2)};
    MT_CHECK(a.strides.size() == 4, op, ": ", what, " strides must have 4 values [N, C, H, W], got ", a.strides.size());
    for (int64_t s : a.strides) MT_CHECK(s >= 0, op, ": negative ", what, " strides are not supported");
    return a;
  }

  // The call runs on the device of storage `id`.
  int on(int64_t id) { return dev = devOf(op, id); }

  void* at(const Act& a, const int64_t (&dims)[4], DType t) const {
    devOf(op, a.id, dev);
    return dptr(a.id, a.off, stridedSpan(dims, a.strides.data(), 4), t);
  }
  void* at(const Act& a, const int64_t (&dims)[4]) const { return at(a, dims, d); }

  // `count` contiguous elements of dtype t: id at `idArg`, element offset after it.
  void* flat(size_t idArg, int64_t count, DType t) const {
    const int64_t id = argInt(info, idArg);
    devOf(op, id, dev);
    return dptr(id, argInt(info, idArg + 1), count, t);
  }
  void* flat(size_t idArg, int64_t count) const { return flat(idArg, count, d); }
  // The same, or null for id 0.
  void* optional(size_t idArg, int64_t count, DType t) const {
    return argInt(info, idArg) ? flat(idArg, count, t) : nullptr;
  }
};

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
  // Optional trailing (dilationH, dilationW, groups) right after padW; 1 when absent.
  const size_t extra = stridePad + 4;
  if (info.Length() > extra && !info[extra].IsUndefined())
    s.dh = argInt(info, extra), s.dw = argInt(info, extra + 1), s.groups = argInt(info, extra + 2);
  return s;
}

void checkConv(CudaConvProp p, DType d, const CudaConvShape& s) {
  MT_CHECK(d == DType::F32 || d == DType::BF16 || d == DType::F16 || d == DType::F64, convName(p), ": dtype ",
           dtypeNameOf(d), " is not supported (f32, bf16, f16, f64)");
  MT_CHECK(s.N > 0 && s.C > 0 && s.H > 0 && s.W > 0 && s.O > 0 && s.kh > 0 && s.kw > 0, convName(p),
           ": sizes must be positive (", s.describe(), ")");
  MT_CHECK(s.sh > 0 && s.sw > 0 && s.ph >= 0 && s.pw >= 0, convName(p), ": stride ", s.sh, "x", s.sw,
           " must be positive and padding ", s.ph, "x", s.pw, " non-negative");
  MT_CHECK(s.dh > 0 && s.dw > 0 && s.groups > 0 && s.C % s.groups == 0 && s.O % s.groups == 0, convName(p),
           ": dilation ", s.dh, "x", s.dw, " must be positive and groups ", s.groups, " must divide C ", s.C, " and O ",
           s.O);
  const int64_t ekh = s.dh * (s.kh - 1) + 1, ekw = s.dw * (s.kw - 1) + 1;
  MT_CHECK(s.H + 2 * s.ph >= ekh && s.W + 2 * s.pw >= ekw, convName(p), ": kernel ", s.kh, "x", s.kw, " (dilated ",
           ekh, "x", ekw, ") is larger than the padded input ", s.H + 2 * s.ph, "x", s.W + 2 * s.pw);
}

bool directForced() {
  const char* v = std::getenv("MESHTRAIN_CUDA_CONV");
  return v && std::strcmp(v, "direct") == 0;
}

// cuDNN where it applies (workspaces: call_scratch.h), else direct. filterNhwc: w is laid out
// [O, kh, kw, C / groups] (the direct kernels get an [O, C / groups, kh, kw] copy of it).
void runConv(CudaConvProp prop, DType d, int dev, const CudaConvShape& s, const void* a, const int64_t* as, void* w,
             void* b, const int64_t* bs, bool filterNhwc) {
  if (d != DType::F64 && !directForced()) {
    bool done = false;
    {
      CallScratch scratch(dev);
      done = cudnnConv(dev, prop, int(d), s, a, as, w, b, bs, scratch.fn(), filterNhwc);
    }
    if (done) return;
  }
  if (!filterNhwc || s.kh * s.kw == 1) {
    cudaConvDirect(dev, prop, int(d), s, a, as, w, b, bs);
    return;
  }
  const int64_t Cg = s.C / s.groups, fdims[4] = {s.O, Cg, s.kh, s.kw};
  const int64_t oihw[4] = {Cg * s.kh * s.kw, s.kh * s.kw, s.kw, 1}, krsc[4] = {s.kh * s.kw * Cg, 1, s.kw * Cg, Cg};
  CallScratch scratch(dev);
  void* f = scratch(s.O * Cg * s.kh * s.kw * int64_t(itemsize(d)));
  if (prop != kConvBackwardWeights) cudaCopyStrided(dev, int(d), w, krsc, int(d), f, oihw, fdims, 4);
  cudaConvDirect(dev, prop, int(d), s, a, as, f, b, bs);
  if (prop == kConvBackwardWeights) cudaCopyStrided(dev, int(d), f, oihw, int(d), w, krsc, fdims, 4);
}

// Where one conv2d binding's arguments are: the sizes, the activation it reads (a), the one it
// writes or, for the weight gradient, reads second (b: the call's device), and the weight (w).
struct ConvLayout {
  size_t nchw, okk, stridePad;
  size_t a;
  const char* aName;
  bool aIsOutput;  // a is [N, O, OH, OW] (else [N, C, H, W]); b is the other
  size_t b;
  const char* bName;
  size_t w;
};

// Reads and checks a conv2d binding's sizes and operands, then runs it.
struct ConvCall {
  ImageArgs args;
  CudaConvShape s;
  Act a, b;
  void *ap = nullptr, *bp = nullptr, *wp = nullptr;
  int dev = -1;
  bool filterNhwc = false;

  ConvCall(const Napi::CallbackInfo& info, CudaConvProp prop, const ConvLayout& L) : args(info, convName(prop)) {
    s = readConvShape(info, L.nchw, L.okk, L.stridePad);
    checkConv(prop, args.d, s);
    a = args.act(L.a, L.aName);
    b = args.act(L.b, L.bName);
    dev = args.on(b.id);
    const int64_t in[4] = {s.N, s.C, s.H, s.W}, out[4] = {s.N, s.O, s.OH(), s.OW()};
    ap = args.at(a, L.aIsOutput ? out : in);
    bp = args.at(b, L.aIsOutput ? in : out);
    wp = args.flat(L.w, s.O * (s.C / s.groups) * s.kh * s.kw);
    // Optional after groups: the weight laid out [O, kh, kw, C / groups] (kernelsSay 'conv2dFilterNhwc').
    const size_t at = L.stridePad + 7;
    filterNhwc = info.Length() > at && !info[at].IsUndefined() && argBool(info, at);
  }
  DType biasType() const { return statOf(args.d); }
  void run(CudaConvProp prop) const {
    runConv(prop, args.d, dev, s, ap, a.strides.data(), wp, bp, b.strides.data(), filterNhwc);
  }
};

// conv2dForward(dtype, xId, xOff, xStrides, N, C, H, W, wId, wOff, O, kh, kw, biasId, biasOff,
//               outId, outOff, outStrides, strideH, strideW, padH, padW[, dilationH, dilationW, groups,
//               filterNhwc])
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  ConvCall c(info, kConvForward, {4, 10, 18, 1, "input", false, 15, "output", 8});
  const CudaConvShape& s = c.s;
  void* bias = c.args.optional(13, s.O, c.biasType());
  c.run(kConvForward);
  if (bias)
    cudaConvAddBias(c.dev, int(c.args.d), c.bp, c.b.strides.data(), s.N, s.O, s.OH(), s.OW(), int(c.biasType()), bias);
  return info.Env().Undefined();
}

// conv2dBackwardData(dtype, gradOutId, gradOutOff, gradOutStrides, wId, wOff, gradInId, gradInOff,
//                    gradInStrides, N, C, H, W, O, kh, kw, strideH, strideW, padH, padW
//                    [, dilationH, dilationW, groups, filterNhwc])
Napi::Value Conv2dBackwardData(const Napi::CallbackInfo& info) {
  ConvCall(info, kConvBackwardData, {9, 13, 16, 1, "gradOut", true, 6, "gradIn", 4}).run(kConvBackwardData);
  return info.Env().Undefined();
}

// conv2dBackwardWeights(dtype, xId, xOff, xStrides, gradOutId, gradOutOff, gradOutStrides,
//                       gradWId, gradWOff, gradBiasId, gradBiasOff, N, C, H, W, O, kh, kw,
//                       strideH, strideW, padH, padW[, dilationH, dilationW, groups, filterNhwc])
Napi::Value Conv2dBackwardWeights(const Napi::CallbackInfo& info) {
  ConvCall c(info, kConvBackwardWeights, {11, 15, 18, 1, "input", false, 4, "gradOut", 7});
  const CudaConvShape& s = c.s;
  c.run(kConvBackwardWeights);
  if (void* gb = c.args.optional(9, s.O, c.biasType()))
    cudaConvBiasGrad(c.dev, int(c.args.d), c.bp, c.b.strides.data(), s.N, s.O, s.OH(), s.OW(), int(c.biasType()), gb);
  return info.Env().Undefined();
}

// ---- batch norm ----

void checkGeometry(const char* op, int64_t outer, int64_t C, int64_t inner) {
  MT_CHECK(outer >= 0 && C > 0 && inner >= 0, op, ": bad geometry [", outer, ", ", C, ", ", inner, "]");
}

// The dtype of batch norm's weight and bias (and their gradients): argument `at` when given
// (x's 16-bit dtype or the statistics'; the launcher checks which), else the statistics' dtype.
DType affineOf(const Napi::CallbackInfo& info, size_t at, DType d) {
  return info.Length() > at && !info[at].IsUndefined() ? toDType(int(argInt(info, at))) : statOf(d);
}

// batchNormForward(dtype, xId, xOff, outId, outOff, outer, C, inner, weightId, weightOff,
//                  biasId, biasOff, meanId, meanOff, invstdId, invstdOff, runMeanId, runMeanOff,
//                  runVarId, runVarOff, training, momentum, eps[, affineDtype, counterId, counterOff
//                  [, relu, residualId, residualOff]])
// (the optional tail: kernelsSay 'batchNormAffine16'; counter an i64 scalar, id 0 for none; then
// kernelsSay 'batchNormRelu': y = relu(bn(x) [+ residual]), residual dense in x's layout, id 0 for none)
Napi::Value BatchNormForward(const Napi::CallbackInfo& info) {
  ImageArgs a(info, "batchNormForward");
  const char* op = a.op;
  const DType d = a.d;
  const int64_t outer = a.num(5), C = a.num(6), inner = a.num(7);
  checkGeometry(op, outer, C, inner);
  const int64_t n = outer * C * inner;
  const int dev = a.on(a.num(3));
  void* x = a.flat(1, n);
  void* y = a.flat(3, n);
  // [C] statistics vectors: f64 for f64 inputs, f32 otherwise; null for id 0.
  auto stat = [&](size_t idArg) { return a.optional(idArg, C, statOf(d)); };
  void* mean = stat(12);
  void* invstd = stat(14);
  void* runMean = stat(16);
  void* runVar = stat(18);
  const DType wd = affineOf(info, 23, d);
  void* weight = a.optional(8, C, wd);
  void* bias = a.optional(10, C, wd);
  auto* counter = info.Length() > 24 ? static_cast<int64_t*>(a.optional(24, 1, DType::I64)) : nullptr;
  CudaBnRelu relu;
  if (info.Length() > 26) {
    relu.relu = argBool(info, 26);
    relu.residual = a.optional(27, n, d);
    MT_CHECK(relu.relu || !relu.residual, op, ": a residual is added only before the fused ReLU (relu true)");
  }
  const bool training = argBool(info, 20);
  MT_CHECK(mean && invstd, op, ": mean and invstd outputs are required");
  MT_CHECK(training || (runMean && runVar), op, ": evaluation needs running statistics");
  MT_CHECK(!training || outer * inner > 1, op, ": training needs more than one value per channel");
  CallScratch scratch(dev);
  cudaBatchNormForward(dev, int(d), x, y, outer, C, inner, weight, bias, mean, invstd, runMean, runVar, training,
                       argNum(info, 21), argNum(info, 22), scratch.fn(), int(wd), counter, relu);
  return info.Env().Undefined();
}

// batchNormBackward(dtype, gradOutId, gradOutOff, xId, xOff, meanId, meanOff, invstdId,
//                   invstdOff, weightId, weightOff, gradInId, gradInOff, gradWeightId,
//                   gradWeightOff, gradBiasId, gradBiasOff, outer, C, inner, training[, affineDtype
//                   [, yId, yOff, gradResidualId, gradResidualOff]])
// (kernelsSay 'batchNormRelu': y, the fused forward's output, masks gradOut where y <= 0, and
// gradResidual, id 0 for none, gets the masked gradOut)
Napi::Value BatchNormBackward(const Napi::CallbackInfo& info) {
  ImageArgs a(info, "batchNormBackward");
  const DType d = a.d;
  const int64_t outer = a.num(17), C = a.num(18), inner = a.num(19);
  checkGeometry(a.op, outer, C, inner);
  const int64_t n = outer * C * inner;
  const int dev = a.on(a.num(1));
  void* gy = a.flat(1, n);
  void* x = a.flat(3, n);
  auto stat = [&](size_t idArg) { return a.optional(idArg, C, statOf(d)); };
  void* mean = stat(5);
  void* invstd = stat(7);
  MT_CHECK(mean && invstd, a.op, ": mean and invstd are required");
  void* gx = a.optional(11, n, d);
  const DType wd = affineOf(info, 21, d);
  auto affine = [&](size_t idArg) { return a.optional(idArg, C, wd); };
  CudaBnReluGrad relu;
  if (info.Length() > 22) {
    relu.y = a.optional(22, n, d);
    relu.gResidual = info.Length() > 24 ? a.optional(24, n, d) : nullptr;
    MT_CHECK(relu.y || !relu.gResidual, a.op, ": the residual's gradient needs the fused output y");
  }
  CallScratch scratch(dev);
  cudaBatchNormBackward(dev, int(d), gy, x, mean, invstd, affine(9), gx, affine(13), affine(15), outer, C, inner,
                        argBool(info, 20), scratch.fn(), int(wd), relu);
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

// maxPool2d's window (kh, kw, strideH, strideW, padH, padW from `at`).
void readWindow(const Napi::CallbackInfo& info, size_t at, CudaPoolShape& s) {
  s.kh = argInt(info, at), s.kw = argInt(info, at + 1), s.sh = argInt(info, at + 2), s.sw = argInt(info, at + 3);
  s.ph = argInt(info, at + 4), s.pw = argInt(info, at + 5);
}

// The forward also needs padding of at most half the kernel, as the CPU does.
void checkWindow(const char* op, const CudaPoolShape& s, bool forward) {
  MT_CHECK(s.kh > 0 && s.kw > 0 && s.sh > 0 && s.sw > 0 && s.ph >= 0 && s.pw >= 0 &&
               (!forward || (2 * s.ph <= s.kh && 2 * s.pw <= s.kw)),
           op, ": bad kernel ", s.kh, "x", s.kw, " stride ", s.sh, "x", s.sw, " padding ", s.ph, "x", s.pw);
}

// maxPool2dForward(dtype, xId, xOff, xStrides, outId, outOff, outStrides, idxId, idxOff,
//                  N, C, H, W, OH, OW, kh, kw, strideH, strideW, padH, padW)
Napi::Value MaxPool2dForward(const Napi::CallbackInfo& info) {
  ImageArgs a(info, "maxPool2dForward");
  CudaPoolShape s = readPool(info, 9);
  readWindow(info, 15, s);
  checkPool(a.op, s);
  checkWindow(a.op, s, true);
  MT_CHECK((s.OH - 1) * s.sh - s.ph < s.H && (s.OW - 1) * s.sw - s.pw < s.W, a.op, ": the output is too large");
  Act x = a.act(1, "input"), y = a.act(4, "output");
  const int dev = a.on(y.id);
  const int64_t out[4] = {s.N, s.C, s.OH, s.OW};
  void* xp = a.at(x, {s.N, s.C, s.H, s.W});
  void* yp = a.at(y, out);
  auto* idx = static_cast<int32_t*>(a.flat(7, stridedSpan(out, y.strides.data(), 4), DType::I32));
  cudaMaxPoolForward(dev, int(a.d), s, xp, x.strides.data(), yp, y.strides.data(), idx);
  return info.Env().Undefined();
}

// maxPool2dBackward(dtype, gradOutId, gradOutOff, gradOutStrides, idxId, idxOff, idxStrides,
//                   gradInId, gradInOff, gradInStrides, N, C, H, W, OH, OW, kh, kw,
//                   strideH, strideW, padH, padW)
Napi::Value MaxPool2dBackward(const Napi::CallbackInfo& info) {
  ImageArgs a(info, "maxPool2dBackward");
  CudaPoolShape s = readPool(info, 10);
  // The window geometry (the CPU's binding needs none): each input gathers from its windows.
  MT_CHECK(info.Length() >= 22, a.op, ": needs the window geometry kh, kw, strideH, strideW, padH, padW after OW");
  readWindow(info, 16, s);
  checkPool(a.op, s);
  checkWindow(a.op, s, false);
  Act gy = a.act(1, "gradOut"), ix = a.act(4, "index"), gx = a.act(7, "gradIn");
  const int dev = a.on(gx.id);
  void* gyp = a.at(gy, {s.N, s.C, s.OH, s.OW});
  auto* idx = static_cast<const int32_t*>(a.at(ix, {s.N, s.C, s.OH, s.OW}, DType::I32));
  void* gxp = a.at(gx, {s.N, s.C, s.H, s.W});
  cudaMaxPoolBackward(dev, int(a.d), s, gyp, gy.strides.data(), idx, ix.strides.data(), gxp, gx.strides.data());
  return info.Env().Undefined();
}

// adaptiveAvgPool2dForward(dtype, xId, xOff, xStrides, outId, outOff, outStrides, N, C, H, W, OH, OW)
// adaptiveAvgPool2dBackward(dtype, gradOutId, gradOutOff, gradOutStrides, gradInId, gradInOff,
//                           gradInStrides, N, C, H, W, OH, OW)
// The same arguments both ways: what is read, what is written (on the call's device), the sizes.
template <bool Backward>
Napi::Value AdaptiveAvgPool2d(const Napi::CallbackInfo& info) {
  ImageArgs a(info, Backward ? "adaptiveAvgPool2dBackward" : "adaptiveAvgPool2dForward");
  CudaPoolShape s = readPool(info, 7);
  checkPool(a.op, s);
  const int64_t in[4] = {s.N, s.C, s.H, s.W}, out[4] = {s.N, s.C, s.OH, s.OW};
  Act src = a.act(1, Backward ? "gradOut" : "input"), dst = a.act(4, Backward ? "gradIn" : "output");
  const int dev = a.on(dst.id);
  void* sp = a.at(src, Backward ? out : in);
  void* dp = a.at(dst, Backward ? in : out);
  auto run = Backward ? cudaAdaptiveAvgPoolBackward : cudaAdaptiveAvgPoolForward;
  run(dev, int(a.d), s, sp, src.strides.data(), dp, dst.strides.data());
  return info.Env().Undefined();
}

}  // namespace

void registerCudaImage(Napi::Object cuda) {
  MT_EXPORT(cuda, "conv2dForward", Conv2dForward);
  MT_EXPORT(cuda, "conv2dBackwardData", Conv2dBackwardData);
  MT_EXPORT(cuda, "conv2dBackwardWeights", Conv2dBackwardWeights);
  // The conv2d bindings take filterNhwc after groups: a weight laid out [O, kh, kw, C / groups].
  cuda.Set("conv2dFilterNhwc", Napi::Boolean::New(cuda.Env(), true));
  MT_EXPORT(cuda, "batchNormForward", BatchNormForward);
  MT_EXPORT(cuda, "batchNormBackward", BatchNormBackward);
  // batchNormForward/Backward take the affine dtype (16-bit weight and bias) and the batch counter.
  cuda.Set("batchNormAffine16", Napi::Boolean::New(cuda.Env(), true));
  // ... and the fused ReLU tail: relu(bn(x) [+ residual]) forward, the ReLU mask in backward.
  cuda.Set("batchNormRelu", Napi::Boolean::New(cuda.Env(), true));
  MT_EXPORT(cuda, "maxPool2dForward", MaxPool2dForward);
  MT_EXPORT(cuda, "maxPool2dBackward", MaxPool2dBackward);
  MT_EXPORT(cuda, "adaptiveAvgPool2dForward", AdaptiveAvgPool2d<false>);
  MT_EXPORT(cuda, "adaptiveAvgPool2dBackward", AdaptiveAvgPool2d<true>);
}

}  // namespace mt
#endif
