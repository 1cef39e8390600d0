// cuda.linearGelu: linear's product, bias and GELU (the tanh form) in one cuBLASLt call, its
// GELU_AUX_BIAS epilogue also writing the pre-activation that GELU's backward reads; and
// cuda.linearGeluGrad: the next product's input gradient times GELU's derivative at that
// pre-activation (the DGELU epilogue), GELU's backward without its own kernel. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include "cuda/call_scratch.h"
#include "cuda/matmul.h"
#include "cuda/operands.h"
#include "util/args.h"
#include "util/strided.h"

namespace mt {
namespace {

// linearGelu(dtype, aId, aOff, aStrides, bId, bOff, bStrides, biasId, biasOff, outId, outOff, auxId, auxOff, M, N, K):
// out [M, N] (contiguous) = gelu(A @ B + bias), and aux [M, N] (contiguous) = A @ B + bias when
// auxId != 0; A [M, K] and B [K, N] with element strides [0, row, col], bias (optional) N values,
// everything in `dtype`. Returns false with nothing queued where cuBLASLt has no such kernel (f64,
// K 0, N not a multiple of 8, a vector off the 16-byte grid, the heuristic refusing): the caller
// then runs the product and GELU separately.
Napi::Value LinearGelu(const Napi::CallbackInfo& info) {
  const char* op = "linearGelu";
  const DType d = toDType(int(argInt(info, 0)));
  const int64_t aId = argInt(info, 1), aOff = argInt(info, 2);
  auto as = argInts(info, 3);
  const int64_t bId = argInt(info, 4), bOff = argInt(info, 5);
  auto bs = argInts(info, 6);
  const int64_t biasId = argInt(info, 7), biasOff = argInt(info, 8);
  const int64_t outId = argInt(info, 9), outOff = argInt(info, 10);
  const int64_t auxId = argInt(info, 11), auxOff = argInt(info, 12);
  const int64_t M = argInt(info, 13), N = argInt(info, 14), K = argInt(info, 15);
  MT_CHECK(d == DType::F32 || d == DType::F64 || d == DType::BF16 || d == DType::F16, op, ": dtype ", dtypeNameOf(d),
           " is not supported on CUDA (f32, f64, bf16, f16)");
  MT_CHECK(as.size() == 3 && bs.size() == 3, op, ": strides must be [batch, row, col]");
  MT_CHECK(M >= 0 && N >= 0 && K >= 0, op, ": negative size M ", M, " N ", N, " K ", K);
  const int dev = devOf(op, outId);
  devOf(op, aId, dev);
  devOf(op, bId, dev);
  void* out = dptr(outId, outOff, M * N, d);
  void* aux = optionalPtr(op, auxId, auxOff, M * N, d, dev);
  const void* bias = optionalPtr(op, biasId, biasOff, N, d, dev);
  // f64 has no documented epilogue kernels (linear keeps its own f64 path); K 0 has no product.
  if (d == DType::F64 || M == 0 || N == 0 || K == 0) return Napi::Boolean::New(info.Env(), false);
  const int64_t aDims[3] = {1, M, K}, bDims[3] = {1, K, N};
  const void* a = dptr(aId, aOff, stridedSpan(aDims, as.data(), 3), d);
  const void* b = dptr(bId, bOff, stridedSpan(bDims, bs.data(), 3), d);
  CallScratch scratch(dev);  // operands cuBLASLt cannot take as they are get packed here
  MatmulEpilogue ep;
  ep.bias = bias;
  ep.gelu = true;
  ep.geluAux = aux;
  const bool done = cudaMatmul(dev, d, a, as.data(), b, bs.data(), d, out, 1, M, N, K, false, scratch.fn(), ep);
  return Napi::Boolean::New(info.Env(), done);
}

// linearGeluGrad(dtype, aId, aOff, aStrides, bId, bOff, bStrides, auxId, auxOff, outId, outOff, M, N, K):
// out [M, N] (contiguous) = (A @ B) * gelu'(aux), aux [M, N] contiguous (the pre-activation
// linearGelu kept), A [M, K] and B [K, N] with element strides [0, row, col], all in `dtype`.
// False with nothing queued where cuBLASLt has no such kernel (f64, an empty product, N not a
// multiple of 8, aux off the 16-byte grid, the heuristic refusing): the caller runs GELU's backward.
Napi::Value LinearGeluGrad(const Napi::CallbackInfo& info) {
  const char* op = "linearGeluGrad";
  const DType d = toDType(int(argInt(info, 0)));
  const int64_t aId = argInt(info, 1), aOff = argInt(info, 2);
  auto as = argInts(info, 3);
  const int64_t bId = argInt(info, 4), bOff = argInt(info, 5);
  auto bs = argInts(info, 6);
  const int64_t auxId = argInt(info, 7), auxOff = argInt(info, 8);
  const int64_t outId = argInt(info, 9), outOff = argInt(info, 10);
  const int64_t M = argInt(info, 11), N = argInt(info, 12), K = argInt(info, 13);
  MT_CHECK(d == DType::F32 || d == DType::F64 || d == DType::BF16 || d == DType::F16, op, ": dtype ", dtypeNameOf(d),
           " is not supported on CUDA (f32, f64, bf16, f16)");
  MT_CHECK(as.size() == 3 && bs.size() == 3, op, ": strides must be [batch, row, col]");
  MT_CHECK(M >= 0 && N >= 0 && K >= 0, op, ": negative size M ", M, " N ", N, " K ", K);
  MT_CHECK(auxId != 0, op, ": needs the pre-activation (aux)");
  const int dev = devOf(op, outId);
  devOf(op, aId, dev);
  devOf(op, bId, dev);
  void* out = dptr(outId, outOff, M * N, d);
  const void* aux = optionalPtr(op, auxId, auxOff, M * N, d, dev);
  if (d == DType::F64 || M == 0 || N == 0 || K == 0) return Napi::Boolean::New(info.Env(), false);
  const int64_t aDims[3] = {1, M, K}, bDims[3] = {1, K, N};
  const void* a = dptr(aId, aOff, stridedSpan(aDims, as.data(), 3), d);
  const void* b = dptr(bId, bOff, stridedSpan(bDims, bs.data(), 3), d);
  CallScratch scratch(dev);
  MatmulEpilogue ep;
  ep.geluGradAux = aux;
  const bool done = cudaMatmul(dev, d, a, as.data(), b, bs.data(), d, out, 1, M, N, K, false, scratch.fn(), ep);
  return Napi::Boolean::New(info.Env(), done);
}

}  // namespace

void registerCudaLinearGelu(Napi::Object cuda) {
  MT_EXPORT(cuda, "linearGelu", LinearGelu);
  MT_EXPORT(cuda, "linearGeluGrad", LinearGeluGrad);
}

}  // namespace mt
#endif
