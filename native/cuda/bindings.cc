// The addon's CUDA surface: cudaLibraries() and copyBytes() in every build; in CUDA builds the
// `cuda` object, whose kernels take the same arguments as the CPU ones of the same name (the
// TypeScript side picks the object by the tensors' device), plus allocator statistics.
#include <cstring>
#include "cuda/bindings_nccl.h"
#include "cuda/cudnn_api.h"
#include "cuda/dynlib.h"
#include "cuda/libraries.h"
#include "tensor/storage.h"
#include "util/args.h"
#include "util/grad_scale.h"
#include "util/stats_object.h"
#ifdef MESHTRAIN_CUDA
#include "cuda/bindings_image.h"
#include "cuda/call_scratch.h"
#include "cuda/bindings_nn.h"
#include "cuda/device_memory.h"
#include "cuda/kernels.h"
#include "cuda/matmul.h"
#include "cuda/runtime.h"
#endif

namespace mt {
namespace {

Napi::Object reportObject(Napi::Env env, const LibraryReport& r) {
  auto o = Napi::Object::New(env);
  o.Set("found", r.found);
  if (r.found) {
    o.Set("path", r.path);
    o.Set("version", r.version);
  } else {
    o.Set("error", r.error);
  }
  return o;
}

// cudaLibraries() -> {searchDirs, cublasLt: {found, path, version} | {found: false, error}, nccl}
Napi::Value CudaLibraries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  auto dirs = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& d : cudaLibSearchDirs()) dirs.Set(i++, d);
  o.Set("searchDirs", dirs);
  o.Set("cublasLt", reportObject(env, cublasLtReport()));
  o.Set("nccl", reportObject(env, ncclReport()));
  o.Set("cudnn", reportObject(env, cudnnReport()));
  return o;
}

// copyBytes(srcId, srcByteOff, dstId, dstByteOff, bytes): between any two devices.
Napi::Value CopyBytes(const Napi::CallbackInfo& info) {
  int64_t sId = argInt(info, 0), sOff = argInt(info, 1), dId = argInt(info, 2), dOff = argInt(info, 3),
          n = argInt(info, 4);
  MT_CHECK(n >= 0, "copyBytes: negative length ", n);
  const uint8_t* src = anyDevicePtr<uint8_t>(sId, sOff, n);
  uint8_t* dst = anyDevicePtr<uint8_t>(dId, dOff, n);
  if (n == 0) return info.Env().Undefined();
  int sd = storageAt(sId).device, dd = storageAt(dId).device;
#ifdef MESHTRAIN_CUDA
  if (isCudaCode(sd) && isCudaCode(dd)) cudaCopyDevice(dd - 1, dst, sd - 1, src, size_t(n));
  else if (isCudaCode(sd)) cudaCopyToHost(sd - 1, dst, src, size_t(n));
  else if (isCudaCode(dd)) cudaCopyFromHost(dd - 1, dst, src, size_t(n));
  else std::memcpy(dst, src, size_t(n));
#else
  (void)sd, (void)dd;
  std::memcpy(dst, src, size_t(n));
#endif
  return info.Env().Undefined();
}

// storageIsCuda(id) -> bool: which kernel table the fused optimizer ranges dispatch to.
Napi::Value StorageIsCuda(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), isCudaCode(storageAt(argInt(info, 0)).device));
}

#ifdef MESHTRAIN_CUDA

// The CUDA ordinal of storage `id`, which must be on the same device as `dev` when dev >= 0.
int deviceOf(const char* op, int64_t id, int dev = -1) {
  int code = storageAt(id).device;
  MT_CHECK(isCudaCode(code), op, ": storage ", id, " is not on a CUDA device");
  MT_CHECK(dev < 0 || code - 1 == dev, op, ": operands on cuda:", dev, " and cuda:", code - 1);
  return code - 1;
}

size_t itemOf(int64_t code) { return itemsize(toDType(int(code))); }

template <typename T = void>
T* ptr(int64_t id, int64_t elemOff, int64_t count, size_t item) {
  return reinterpret_cast<T*>(cudaDataPtr<uint8_t>(id, elemOff * int64_t(item), count * int64_t(item)));
}

int64_t spanOf(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  int64_t hi = 0;
  for (size_t k = 0; k < shape.size(); k++) {
    if (shape[k] == 0) return 0;
    hi += (shape[k] - 1) * strides[k];
  }
  return hi + 1;
}

Napi::Value CopyStrided(const Napi::CallbackInfo& info) {
  int sd = int(argInt(info, 0));
  int64_t sId = argInt(info, 1), sOff = argInt(info, 2);
  auto ss = argInts(info, 3);
  int dd = int(argInt(info, 4));
  int64_t dId = argInt(info, 5), dOff = argInt(info, 6);
  auto ds = argInts(info, 7);
  auto shape = argInts(info, 8);
  MT_CHECK(ss.size() == shape.size() && ds.size() == shape.size(), "copy: rank mismatch");
  int dev = deviceOf("copy", dId);
  deviceOf("copy", sId, dev);
  int64_t sSpan = spanOf(shape, ss), dSpan = spanOf(shape, ds);
  if (sSpan == 0) return info.Env().Undefined();
  cudaCopyStrided(dev, sd, ptr(sId, sOff, sSpan, itemOf(sd)), ss.data(), dd, ptr(dId, dOff, dSpan, itemOf(dd)), ds.data(),
                  shape.data(), int(shape.size()));
  return info.Env().Undefined();
}

Napi::Value Fill(const Napi::CallbackInfo& info) {
  int d = int(argInt(info, 0));
  int64_t id = argInt(info, 1), off = argInt(info, 2), n = argInt(info, 3);
  cudaFill(deviceOf("fill", id), d, ptr(id, off, n, itemOf(d)), n, argNum(info, 4));
  return info.Env().Undefined();
}

Napi::Value Binary(const Napi::CallbackInfo& info) {
  int op = int(argInt(info, 0)), d = int(argInt(info, 1));
  int64_t aId = argInt(info, 2), aOff = argInt(info, 3);
  auto as = argInts(info, 4);
  int64_t bId = argInt(info, 5), bOff = argInt(info, 6);
  auto bs = argInts(info, 7);
  int64_t oId = argInt(info, 8), oOff = argInt(info, 9);
  auto shape = argInts(info, 10);
  MT_CHECK(as.size() == shape.size() && bs.size() == shape.size(), "binary: rank mismatch");
  int dev = deviceOf("binary", oId);
  deviceOf("binary", aId, dev);
  deviceOf("binary", bId, dev);
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  if (n == 0) return info.Env().Undefined();
  size_t it = itemOf(d);
  cudaBinary(dev, op, d, ptr(aId, aOff, spanOf(shape, as), it), as.data(), ptr(bId, bOff, spanOf(shape, bs), it),
             bs.data(), ptr(oId, oOff, n, it), shape.data(), int(shape.size()));
  return info.Env().Undefined();
}

Napi::Value BinaryFlat(const Napi::CallbackInfo& info) {
  int op = int(argInt(info, 0)), d = int(argInt(info, 1));
  int64_t aId = argInt(info, 2), aOff = argInt(info, 3), bId = argInt(info, 4), bOff = argInt(info, 5),
          oId = argInt(info, 6), oOff = argInt(info, 7), n = argInt(info, 8);
  int dev = deviceOf("binary", oId);
  deviceOf("binary", aId, dev);
  deviceOf("binary", bId, dev);
  size_t it = itemOf(d);
  cudaBinaryFlat(dev, op, d, ptr(aId, aOff, n, it), ptr(bId, bOff, n, it), ptr(oId, oOff, n, it), n);
  return info.Env().Undefined();
}

Napi::Value Unary(const Napi::CallbackInfo& info) {
  int op = int(argInt(info, 0)), d = int(argInt(info, 1));
  int64_t xId = argInt(info, 2), xOff = argInt(info, 3), oId = argInt(info, 4), oOff = argInt(info, 5),
          n = argInt(info, 6);
  int dev = deviceOf("unary", oId);
  deviceOf("unary", xId, dev);
  size_t it = itemOf(d);
  const double* sp = nullptr;  // the optional device scalar (sId, sOff): see the CPU binding
  if (info.Length() > 8 && !info[8].IsUndefined()) {
    const int64_t sId = argInt(info, 8);
    deviceOf("unary", sId, dev);
    sp = ptr<const double>(sId, argInt(info, 9), 1, sizeof(double));
  }
  cudaUnary(dev, op, d, ptr(xId, xOff, n, it), ptr(oId, oOff, n, it), n, argNum(info, 7), sp);
  return info.Env().Undefined();
}

Napi::Value Axpy(const Napi::CallbackInfo& info) {
  int d = int(argInt(info, 0));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), yId = argInt(info, 3), yOff = argInt(info, 4),
          n = argInt(info, 5);
  int dev = deviceOf("axpy", yId);
  deviceOf("axpy", xId, dev);
  size_t it = itemOf(d);
  cudaAxpy(dev, d, ptr(xId, xOff, n, it), ptr(yId, yOff, n, it), n, argNum(info, 6));
  return info.Env().Undefined();
}

Napi::Value Reduce(const Napi::CallbackInfo& info) {
  int op = int(argInt(info, 0)), d = int(argInt(info, 1));
  int64_t xId = argInt(info, 2), xOff = argInt(info, 3), oId = argInt(info, 4), oOff = argInt(info, 5),
          outer = argInt(info, 6), r = argInt(info, 7), inner = argInt(info, 8);
  int dev = deviceOf("reduce", oId);
  deviceOf("reduce", xId, dev);
  size_t it = itemOf(d);
  const int64_t need = cudaReduceScratch(outer, r, inner);
  // Partial sums of a chunked reduction (call_scratch.h).
  CallScratch scratch(dev);
  void* partial = need ? scratch(int64_t(size_t(need) * sizeof(double))) : nullptr;
  cudaReduce(dev, op, d, ptr(xId, xOff, outer * r * inner, it), ptr(oId, oOff, outer * inner, it), outer, r, inner,
             argNum(info, 9), static_cast<double*>(partial));
  return info.Env().Undefined();
}

Napi::Value SoftmaxForward(const Napi::CallbackInfo& info) {
  int d = int(argInt(info, 0));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), yId = argInt(info, 3), yOff = argInt(info, 4),
          rows = argInt(info, 5), cols = argInt(info, 6);
  int dev = deviceOf("softmax", yId);
  deviceOf("softmax", xId, dev);
  size_t it = itemOf(d);
  cudaSoftmaxForward(dev, d, ptr(xId, xOff, rows * cols, it), ptr(yId, yOff, rows * cols, it), rows, cols,
                     argBool(info, 7), argInt(info, 8), argNum(info, 9));
  return info.Env().Undefined();
}

Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  int d = int(argInt(info, 0));
  int64_t yId = argInt(info, 1), yOff = argInt(info, 2), gId = argInt(info, 3), gOff = argInt(info, 4),
          dxId = argInt(info, 5), dxOff = argInt(info, 6), rows = argInt(info, 7), cols = argInt(info, 8);
  int dev = deviceOf("softmax backward", dxId);
  deviceOf("softmax backward", yId, dev);
  deviceOf("softmax backward", gId, dev);
  size_t it = itemOf(d), n = size_t(rows * cols);
  cudaSoftmaxBackward(dev, d, ptr(yId, yOff, int64_t(n), it), ptr(gId, gOff, int64_t(n), it), ptr(dxId, dxOff, int64_t(n), it),
                      rows, cols, argBool(info, 9), argInt(info, 10), argNum(info, 11));
  return info.Env().Undefined();
}

// A device pointer or null for id -1 (no momentum buffer, no master copy).
void* optPtr(const char* op, int64_t id, int64_t off, int64_t n, size_t item, int dev) {
  if (id < 0) return nullptr;
  deviceOf(op, id, dev);
  return ptr(id, off, n, item);
}

Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  int pd = int(argInt(info, 0)), gd = int(argInt(info, 3)), sd = int(argInt(info, 6));
  int64_t pId = argInt(info, 1), pOff = argInt(info, 2), gId = argInt(info, 4), gOff = argInt(info, 5);
  int64_t bufId = argInt(info, 7), bufOff = argInt(info, 8), mId = argInt(info, 9), mOff = argInt(info, 10),
          n = argInt(info, 11);
  CudaSgdHyper h{argNum(info, 12), argNum(info, 13), argNum(info, 14), argNum(info, 15),
                 argBool(info, 16), argBool(info, 17), argBool(info, 18), argGradScale(info, 19, "sgdStep")};
  MT_CHECK(n >= 0, "sgdStep: negative length ", n);
  if (n == 0) return info.Env().Undefined();
  int dev = deviceOf("sgdStep", pId);
  deviceOf("sgdStep", gId, dev);
  size_t si = itemOf(sd);
  cudaSgdStep(dev, pd, ptr(pId, pOff, n, itemOf(pd)), gd, ptr(gId, gOff, n, itemOf(gd)), sd,
              optPtr("sgdStep", bufId, bufOff, n, si, dev), optPtr("sgdStep", mId, mOff, n, si, dev), n, h);
  return info.Env().Undefined();
}

Napi::Value AdamStep(const Napi::CallbackInfo& info) {
  int pd = int(argInt(info, 0)), gd = int(argInt(info, 3)), sd = int(argInt(info, 6));
  int64_t pId = argInt(info, 1), pOff = argInt(info, 2), gId = argInt(info, 4), gOff = argInt(info, 5);
  int64_t mId = argInt(info, 7), mOff = argInt(info, 8), vId = argInt(info, 9), vOff = argInt(info, 10);
  int64_t wId = argInt(info, 11), wOff = argInt(info, 12), n = argInt(info, 13);
  CudaAdamHyper h{argNum(info, 14), argNum(info, 15), argNum(info, 16), argNum(info, 17), argNum(info, 18),
                  argInt(info, 19), argBool(info, 20), argBool(info, 21), argGradScale(info, 22, "adamStep")};
  MT_CHECK(n >= 0, "adamStep: negative length ", n);
  MT_CHECK(h.step >= 1, "adamStep: step counts from 1, got ", h.step);
  if (n == 0) return info.Env().Undefined();
  int dev = deviceOf("adamStep", pId);
  deviceOf("adamStep", gId, dev);
  deviceOf("adamStep", mId, dev);
  deviceOf("adamStep", vId, dev);
  size_t si = itemOf(sd);
  cudaAdamStep(dev, pd, ptr(pId, pOff, n, itemOf(pd)), gd, ptr(gId, gOff, n, itemOf(gd)), sd, ptr(mId, mOff, n, si),
               ptr(vId, vOff, n, si), optPtr("adamStep", wId, wOff, n, si, dev), n, h);
  return info.Env().Undefined();
}

Napi::Value NormPow(const Napi::CallbackInfo& info) {
  int d = int(argInt(info, 0));
  int64_t id = argInt(info, 1), off = argInt(info, 2), n = argInt(info, 3);
  double p = argNum(info, 4);
  MT_CHECK(p > 0, "normPow: p must be positive, got ", p);
  if (n == 0) return Napi::Number::New(info.Env(), 0);
  int dev = deviceOf("normPow", id);
  // The partial sums live in a scratch storage tagged 'other' (returned to the cache at once).
  int64_t scratch = allocStorage(size_t(cudaNormPowScratch(n)) * sizeof(double), Tag::Other, dev + 1, false);
  double r;
  try {
    r = cudaNormPow(dev, d, ptr(id, off, n, itemOf(d)), n, p, static_cast<double*>(storageAt(scratch).ptr));
  } catch (...) {
    freeStorage(scratch);
    throw;
  }
  freeStorage(scratch);
  return Napi::Number::New(info.Env(), r);
}

// matmul(dtype, aId, aOff, aStrides, bId, bOff, bStrides, biasId, biasOff, outDtype, outId, outOff,
//        batch, M, N, K, accumulate[, biasDtype[, biasGradA]]): native/cpu/matmul.cc's arguments, and
// on CUDA a bias in the output's dtype (biasDtype; f32, f64 for f64, when absent or -1), or with
// biasGradA the bias storage receiving A's row sums (M values, the output's dtype) from the same
// cuBLASLt call. Returns whether that bias gradient was written (false: cuBLASLt has no such
// epilogue here, reduce A yourself); the product is done either way. outLd (arg 19, > N): out's row
// pitch in elements (rows ldOut apart, matrices M * outLd apart; the padding is not written).
// addId, addOff (args 20, 21; id 0: none): out = product (+ bias) + that tensor, in out's dtype and
// layout, summed in the product's f32 (cuBLASLt's C, beta = 1) and rounded once; K > 0, no accumulate.
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t aId = argInt(info, 1), aOff = argInt(info, 2);
  auto as = argInts(info, 3);
  int64_t bId = argInt(info, 4), bOff = argInt(info, 5);
  auto bs = argInts(info, 6);
  int64_t biasId = argInt(info, 7), biasOff = argInt(info, 8);
  DType od = toDType(int(argInt(info, 9)));
  int64_t oId = argInt(info, 10), oOff = argInt(info, 11);
  int64_t batch = argInt(info, 12), M = argInt(info, 13), N = argInt(info, 14), K = argInt(info, 15);
  bool accumulate = argBool(info, 16);
  const int64_t biasCode = info.Length() > 17 ? argInt(info, 17) : -1;
  const bool biasGradA = info.Length() > 18 && argBool(info, 18);
  const int64_t outLd = info.Length() > 19 ? argInt(info, 19) : 0;
  const int64_t addId = info.Length() > 20 ? argInt(info, 20) : 0, addOff = info.Length() > 21 ? argInt(info, 21) : 0;
  MT_CHECK(d == DType::F32 || d == DType::F64 || d == DType::BF16 || d == DType::F16, "matmul: dtype ", dtypeNameOf(d),
           " is not supported on CUDA (f32, f64, bf16, f16)");
  const bool half = d == DType::BF16 || d == DType::F16;
  MT_CHECK(half ? (od == DType::F32 || od == d) : od == d, "matmul: inputs of dtype ", dtypeNameOf(d), " cannot produce ",
           dtypeNameOf(od));
  MT_CHECK(as.size() == 3 && bs.size() == 3, "matmul: strides must be [batch, row, col]");
  MT_CHECK(batch >= 0 && M >= 0 && N >= 0 && K >= 0, "matmul: negative size");
  MT_CHECK(outLd == 0 || outLd >= N, "matmul: output row pitch ", outLd, " is below its ", N, " columns");
  const int64_t ld = outLd > 0 ? outLd : N;
  int dev = deviceOf("matmul", oId);
  deviceOf("matmul", aId, dev);
  deviceOf("matmul", bId, dev);
  const size_t item = itemsize(d), oItem = itemsize(od);
  const int64_t outN = batch * M * N;
  // The last row ends at its N-th column: its padding need not exist.
  void* out = ptr(oId, oOff, outN == 0 ? 0 : (batch * M - 1) * ld + N, oItem);
  const DType wide = d == DType::F64 ? DType::F64 : DType::F32;
  const DType biasType = biasCode < 0 ? wide : toDType(int(biasCode));
  MT_CHECK(biasType == wide || biasType == od, "matmul: a bias of dtype ", dtypeNameOf(biasType), " with a ",
           dtypeNameOf(od), " output (it takes ", dtypeNameOf(wide), " or the output's dtype)");
  MT_CHECK(!biasGradA || (biasId && biasType == od && batch == 1 && K > 0), "matmul: a bias gradient needs a bias storage ",
           "in the output's dtype, batch 1 and K > 0 (got batch ", batch, ", K ", K, ")");
  MT_CHECK(!addId || (K > 0 && !accumulate && !biasGradA), "matmul: an addend needs K > 0, no accumulation and no bias ",
           "gradient (got K ", K, ")");
  const void* addend = nullptr;
  if (addId) {
    deviceOf("matmul", addId, dev);
    addend = ptr(addId, addOff, outN == 0 ? 0 : (batch * M - 1) * ld + N, oItem);
  }
  void* bias = nullptr;
  if (biasId) {
    deviceOf("matmul", biasId, dev);
    bias = ptr(biasId, biasOff, biasGradA ? M : N, itemsize(biasType));
  }
  if (outN == 0) return Napi::Boolean::New(info.Env(), false);
  if (K == 0) {
    cudaAddBias(dev, int(od), out, int(biasType), bias, batch * M, N, accumulate, true, ld);
    return Napi::Boolean::New(info.Env(), false);
  }
  const int64_t aSpan = spanOf({batch, M, K}, as), bSpan = spanOf({batch, K, N}, bs);
  const void* aPtr = ptr(aId, aOff, aSpan, item);
  const void* bPtr = ptr(bId, bOff, bSpan, item);
  CallScratch scratch(dev);  // cuBLASLt's workspace, freed once the matmul is queued
  MatmulEpilogue ep;
  // f64 keeps its own bias pass: the epilogues are documented for the tensor-core and f32 paths.
  if (biasGradA) ep.biasGradA = bias;
  else if (bias && biasType == od && od != DType::F64) ep.bias = bias;
  ep.addend = addend;
  if (ep.bias || ep.biasGradA) {
    if (cudaMatmul(dev, d, aPtr, as.data(), bPtr, bs.data(), od, out, batch, M, N, K, accumulate, scratch.fn(), ep, ld))
      return Napi::Boolean::New(info.Env(), biasGradA);
  }
  // No epilogue (none asked, or none for this problem): the addend is C, which needs none.
  MatmulEpilogue plain;
  plain.addend = addend;
  cudaMatmul(dev, d, aPtr, as.data(), bPtr, bs.data(), od, out, batch, M, N, K, accumulate, scratch.fn(), plain, ld);
  if (bias && !biasGradA) cudaAddBias(dev, int(od), out, int(biasType), bias, batch * M, N, true, false, ld);
  return Napi::Boolean::New(info.Env(), false);
}

// cudaAllocatorStats(dev) -> {cachedBytes, reservedBytes, hits, misses, graphBytes}
Napi::Value AllocatorStats(const Napi::CallbackInfo& info) {
  int64_t dev = argInt(info, 0);
  MT_CHECK(dev >= 0 && dev < kMaxCudaDevices, "cudaAllocatorStats: no device cuda:", dev);
  DeviceCacheStats s = cudaCacheStats(int(dev));
  Napi::Object o = cacheStatsObject(info.Env(), s);
  o.Set("graphBytes", double(s.graphBytes));
  return o;
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  int64_t dev = argInt(info, 0);
  MT_CHECK(dev >= 0 && dev < kMaxCudaDevices, "cudaEmptyCache: no device cuda:", dev);
  cudaEmptyCache(int(dev));
  return info.Env().Undefined();
}

// cudaDeviceProperties(dev) -> {name, major, minor, multiProcessors, totalMemory, l2CacheBytes, freeMemory}
Napi::Value DeviceProperties(const Napi::CallbackInfo& info) {
  int64_t dev = argInt(info, 0);
  MT_CHECK(dev >= 0 && dev < cudaDeviceCountCached(), "cudaDeviceProperties: no device cuda:", dev);
  cudaDeviceProp p{};
  cudaCheck(cudaGetDeviceProperties(&p, int(dev)), "cudaGetDeviceProperties");
  cudaUseDevice(int(dev));
  size_t freeB = 0, totalB = 0;
  cudaCheck(cudaMemGetInfo(&freeB, &totalB), "cudaMemGetInfo");
  auto o = Napi::Object::New(info.Env());
  o.Set("name", std::string(p.name));
  o.Set("major", p.major);
  o.Set("minor", p.minor);
  o.Set("multiProcessors", p.multiProcessorCount);
  o.Set("totalMemory", double(p.totalGlobalMem));
  o.Set("freeMemory", double(freeB));
  o.Set("l2CacheBytes", p.l2CacheSize);
  return o;
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  int64_t dev = argInt(info, 0);
  MT_CHECK(dev >= 0 && dev < cudaDeviceCountCached(), "cudaSynchronize: no device cuda:", dev);
  cudaSynchronizeDevice(int(dev));
  return info.Env().Undefined();
}

#endif

}  // namespace

void registerStaging(Napi::Object exports);  // bindings_staging.cc
void registerCudaSync(Napi::Object cuda, Napi::Object exports);  // bindings_sync.cc
void registerCudaVocab(Napi::Object cuda);   // bindings_vocab.cc
void registerCudaCensus(Napi::Object exports);  // census.cc
void registerCudaProfiler(Napi::Object exports);  // profiler_range.cc
void registerCudaArange(Napi::Object cuda);  // bindings_arange.cc
void registerCudaAdamMulti(Napi::Object cuda);  // bindings_adam_multi.cc
void registerCudaSgdMulti(Napi::Object cuda);  // bindings_sgd_multi.cc
void registerCudaLinearGelu(Napi::Object cuda);  // bindings_linear_gelu.cc
void registerCudaHostBench(Napi::Object cuda);  // bindings_host_bench.cc
void registerCudaGraph(Napi::Object exports);  // cuda_graph.cc
void registerCudaReadLater(Napi::Object cuda);  // read_later.cc

void registerCuda(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "cudaLibraries", CudaLibraries);
  registerStaging(exports);
  MT_EXPORT(exports, "copyBytes", CopyBytes);
  MT_EXPORT(exports, "storageIsCuda", StorageIsCuda);
  registerNccl(env, exports);
#ifdef MESHTRAIN_CUDA
  auto cuda = Napi::Object::New(env);
  MT_EXPORT(cuda, "copyStrided", CopyStrided);
  MT_EXPORT(cuda, "fill", Fill);
  MT_EXPORT(cuda, "binary", Binary);
  MT_EXPORT(cuda, "binaryFlat", BinaryFlat);
  MT_EXPORT(cuda, "unary", Unary);
  MT_EXPORT(cuda, "axpy", Axpy);
  MT_EXPORT(cuda, "reduce", Reduce);
  MT_EXPORT(cuda, "softmaxForward", SoftmaxForward);
  MT_EXPORT(cuda, "softmaxBackward", SoftmaxBackward);
  MT_EXPORT(cuda, "sgdStep", SgdStep);
  MT_EXPORT(cuda, "adamStep", AdamStep);
  MT_EXPORT(cuda, "normPow", NormPow);
  MT_EXPORT(cuda, "matmul", Matmul);
  cuda.Set("matmulOutLd", Napi::Boolean::New(env, true));  // takes outLd (a padded row pitch)
  cuda.Set("matmulEpilogues", Napi::Boolean::New(env, true));  // takes biasDtype and biasGradA
  cuda.Set("matmulAddend", Napi::Boolean::New(env, true));     // takes addId, addOff (args 20, 21)
  registerCudaNn(cuda);
  registerCudaAttention(cuda);
  registerCudaIndex(cuda);
  registerCudaVocab(cuda);
  registerCudaImage(cuda);
  registerCudaArange(cuda);
  registerCudaAdamMulti(cuda);
  registerCudaSgdMulti(cuda);
  registerCudaLinearGelu(cuda);
  registerCudaHostBench(cuda);
  registerCudaSync(cuda, exports);
  registerCudaReadLater(cuda);
  exports.Set("cuda", cuda);
  MT_EXPORT(exports, "cudaAllocatorStats", AllocatorStats);
  MT_EXPORT(exports, "cudaEmptyCache", EmptyCache);
  MT_EXPORT(exports, "cudaSynchronize", Synchronize);
  MT_EXPORT(exports, "cudaDeviceProperties", DeviceProperties);
  registerCudaBench(exports);
  registerCudaCensus(exports);
  registerCudaGraph(exports);
  registerCudaProfiler(exports);
#endif
}

}  // namespace mt
