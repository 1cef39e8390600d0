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

// What both calls share: dtype (arg 0), A [M, K] (args 1-3) and B [K, N] (args 4-6) with element
// strides [0, row, col], the contiguous out [M, N] (args outAt, outAt + 1) and M, N, K (from mnkAt),
// checked and on one device.
struct GeluProduct {
  const char* op;
  DType d;
  int64_t aId, aOff, bId, bOff, M, N, K;
  std::vector<int64_t> as, bs;
  int dev;
  void* out;

  GeluProduct(const Napi::CallbackInfo& info, const char* name, size_t outAt, size_t mnkAt) : op(name) {
    d = toDType(int(argInt(info, 0)));
    aId = argInt(info, 1), aOff = argInt(info, 2), as = argInts(info, 3);
    bId = argInt(info, 4), bOff = argInt(info, 5), bs = argInts(info, 6);
    M = argInt(info, mnkAt), N = argInt(info, mnkAt + 1), K = argInt(info, mnkAt + 2);
    MT_CHECK(d == DType::F32 || d == DType::F64 || d == DType::BF16 || d == DType::F16, op, ": dtype ", dtypeNameOf(d),
             " is not supported on CUDA (f32, f64, bf16, f16)");
    MT_CHECK(as.size() == 3 && bs.size() == 3, op, ": strides must be [batch, row, col]");
    MT_CHECK(M >= 0 && N >= 0 && K >= 0, op, ": negative size M ", M, " N ", N, " K ", K);
    const int64_t outId = argInt(info, outAt);
    dev = devOf(op, outId);
    devOf(op, aId, dev);
    devOf(op, bId, dev);
    out = dptr(outId, argInt(info, outAt + 1), M * N, d);
  }

  // f64 has no documented epilogue kernels (linear keeps its own f64 path); an empty product none.
  bool unsupported() const { return d == DType::F64 || M == 0 || N == 0 || K == 0; }

  // The product with `ep`; false with nothing queued where cuBLASLt has no such kernel.
  bool run(const MatmulEpilogue& ep) const {
    const int64_t aDims[3] = {1, M, K}, bDims[3] = {1, K, N};
    const void* a = dptr(aId, aOff, stridedSpan(aDims, as.data(), 3), d);
    const void* b = dptr(bId, bOff, stridedSpan(bDims, bs.data(), 3), d);
    CallScratch scratch(dev);  // operands cuBLASLt cannot take as they are get packed here
    return cudaMatmul(dev, d, a, as.data(), b, bs.data(), d, out, 1, M, N, K, false, scratch.fn(), ep);
  }
};

// linearGelu(dtype, aId, aOff, aStrides, bId, bOff, bStrides, biasId, biasOff, outId, outOff, auxId, auxOff, M, N, K):
// out [M, N] (contiguous) = gelu(A @ B + bias), and aux [M, N] (contiguous) = A @ B + bias when
// auxId != 0; A [M, K] and B [K, N] with element strides [0, row, col], bias (optional) N values,
// everything in `dtype`. Returns false with nothing queued where cuBLASLt has no such kernel (f64,
// K 0, N not a multiple of 8, a vector off the 16-byte grid, the heuristic refusing): the caller
// then runs the product and GELU separately.
Napi::Value LinearGelu(const Napi::CallbackInfo& info) {
  const GeluProduct g(info, "linearGelu", 9, 13);
  MatmulEpilogue ep;
  ep.geluAux = optionalPtr(g.op, argInt(info, 11), argInt(info, 12), g.M * g.N, g.d, g.dev);
  ep.bias = optionalPtr(g.op, argInt(info, 7), argInt(info, 8), g.N, g.d, g.dev);
  ep.gelu = true;
  return Napi::Boolean::New(info.Env(), !g.unsupported() && g.run(ep));
}

// linearGeluGrad(dtype, aId, aOff, aStrides, bId, bOff, bStrides, auxId, auxOff, outId, outOff, M, N, K):
// out [M, N] (contiguous) = (A @ B) * gelu'(aux), aux [M, N] contiguous (the pre-activation
// linearGelu kept), A [M, K] and B [K, N] with element strides [0, row, col], all in `dtype`.
// False with nothing queued where cuBLASLt has no such kernel (f64, an empty product, N not a
// multiple of 8, aux off the 16-byte grid, the heuristic refusing): the caller runs GELU's backward.
Napi::Value LinearGeluGrad(const Napi::CallbackInfo& info) {
  const GeluProduct g(info, "linearGeluGrad", 9, 11);
  const int64_t auxId = argInt(info, 7);
  MT_CHECK(auxId != 0, g.op, ": needs the pre-activation (aux)");
  MatmulEpilogue ep;
  ep.geluGradAux = optionalPtr(g.op, auxId, argInt(info, 8), g.M * g.N, g.d, g.dev);
  return Napi::Boolean::New(info.Env(), !g.unsupported() && g.run(ep));
}

}  // namespace

void registerCudaLinearGelu(Napi::Object cuda) {
  MT_EXPORT(cuda, "linearGelu", LinearGelu);
  MT_EXPORT(cuda, "linearGeluGrad", LinearGeluGrad);
}

}  // namespace mt
#endif
