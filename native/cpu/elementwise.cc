// Element-wise kernels: broadcasting binary ops (strides of 0 broadcast) and unary ops with
// an optional scalar. Op codes are mirrored in src/tensor/kernels.ts.
#include <cmath>
#include <vector>
#include "tensor/storage.h"
#include "util/args.h"
#include "util/parallel.h"
#include "util/strided.h"

namespace mt {
namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluC = 0.044715;

enum Binary {
  kAdd, kSub, kMul, kDiv, kMax, kMin, kPow,
  kReluBackward,     // a = grad, b = x
  kGeluBackward,     // a = grad, b = x
  kTanhBackward,     // a = grad, b = tanh(x)
  kSigmoidBackward,  // a = grad, b = sigmoid(x)
  kNumBinary
};

enum Unary {
  kNeg, kExp, kLog, kSqrt, kRsqrt, kRelu, kGelu, kTanh, kSigmoid, kAbs,
  kAddScalar, kMulScalar, kPowScalar, kReciprocal, kSquare, kNumUnary
};

template <typename C>
inline C binaryOp(int op, C a, C b) {
  switch (op) {
    case kAdd: return a + b;
    case kSub: return a - b;
    case kMul: return a * b;
    case kDiv: return a / b;
    case kMax: return a > b ? a : b;
    case kMin: return a < b ? a : b;
    case kPow: return std::pow(a, b);
    case kReluBackward: return b > C(0) ? a : C(0);
    case kGeluBackward: {
      C x2 = b * b, inner = C(kSqrt2OverPi) * (b + C(kGeluC) * x2 * b);
      C t = std::tanh(inner);
      C dinner = C(kSqrt2OverPi) * (C(1) + C(3 * kGeluC) * x2);
      return a * (C(0.5) * (C(1) + t) + C(0.5) * b * (C(1) - t * t) * dinner);
    }
    case kTanhBackward: return a * (C(1) - b * b);
    case kSigmoidBackward: return a * b * (C(1) - b);
  }
  return C(0);
}

template <typename C>
inline C unaryOp(int op, C x, C s) {
  switch (op) {
    case kNeg: return -x;
    case kExp: return std::exp(x);
    case kLog: return std::log(x);
    case kSqrt: return std::sqrt(x);
    case kRsqrt: return C(1) / std::sqrt(x);
    case kRelu: return x > C(0) ? x : C(0);
    case kGelu: return C(0.5) * x * (C(1) + std::tanh(C(kSqrt2OverPi) * (x + C(kGeluC) * x * x * x)));
    case kTanh: return std::tanh(x);
    case kSigmoid: return C(1) / (C(1) + std::exp(-x));
    case kAbs: return std::abs(x);
    case kAddScalar: return x + s;
    case kMulScalar: return x * s;
    case kPowScalar: return std::pow(x, s);
    case kReciprocal: return C(1) / x;
    case kSquare: return x * x;
  }
  return C(0);
}

// The op is a template parameter so each inner loop compiles to straight-line code.
template <typename T, int OP>
void binaryKernel(const T* a, const T* b, T* out, const std::vector<int64_t>& shape,
                  const std::vector<int64_t>& as, const std::vector<int64_t>& bs) {
  using C = typename Compute<T>::type;
  int nd = int(shape.size());
  int64_t inner = nd ? shape[nd - 1] : 1, aIn = nd ? as[nd - 1] : 0, bIn = nd ? bs[nd - 1] : 0;
  int64_t outer = 1;
  for (int k = 0; k < nd - 1; k++) outer *= shape[k];
  parallelRows(outer, inner, [&](int64_t o, int64_t i0, int64_t i1) {
    int64_t ao, bo;
    rowOffsets(o, shape, as, bs, &ao, &bo);
    const T* pa = a + ao;
    const T* pb = b + bo;
    T* po = out + o * inner;
    if (aIn == 1 && bIn == 1) {
      for (int64_t i = i0; i < i1; i++) store(po + i, binaryOp<C>(OP, load(pa + i), load(pb + i)));
    } else if (aIn == 1 && bIn == 0) {
      C vb = load(pb);
      for (int64_t i = i0; i < i1; i++) store(po + i, binaryOp<C>(OP, load(pa + i), vb));
    } else {
      for (int64_t i = i0; i < i1; i++)
        store(po + i, binaryOp<C>(OP, load(pa + i * aIn), load(pb + i * bIn)));
    }
  });
}

template <typename T, int OP = 0>
void binaryDispatch(int op, const T* a, const T* b, T* out, const std::vector<int64_t>& shape,
                    const std::vector<int64_t>& as, const std::vector<int64_t>& bs) {
  if constexpr (OP < kNumBinary) {
    if (op == OP) return binaryKernel<T, OP>(a, b, out, shape, as, bs);
    binaryDispatch<T, OP + 1>(op, a, b, out, shape, as, bs);
  }
}

// Both operands dense in one layout: one flat range (parallelRows splits it across threads).
template <typename T, int OP>
void binaryFlatKernel(const T* a, const T* b, T* out, int64_t n) {
  using C = typename Compute<T>::type;
  parallelRows(1, n, [&](int64_t, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) store(out + i, binaryOp<C>(OP, load(a + i), load(b + i)));
  });
}

template <typename T, int OP = 0>
void binaryFlatDispatch(int op, const T* a, const T* b, T* out, int64_t n) {
  if constexpr (OP < kNumBinary) {
    if (op == OP) return binaryFlatKernel<T, OP>(a, b, out, n);
    binaryFlatDispatch<T, OP + 1>(op, a, b, out, n);
  }
}

template <typename T, int OP>
void unaryKernel(const T* x, T* out, int64_t n, double scalar) {
  using C = typename Compute<T>::type;
  C s = C(scalar);
  parallelFor(n, 1, [&](int64_t i) { store(out + i, unaryOp<C>(OP, load(x + i), s)); });
}

template <typename T, int OP = 0>
void unaryDispatch(int op, const T* x, T* out, int64_t n, double s) {
  if constexpr (OP < kNumUnary) {
    if (op == OP) return unaryKernel<T, OP>(x, out, n, s);
    unaryDispatch<T, OP + 1>(op, x, out, n, s);
  }
}

template <typename T>
void axpyKernel(const T* x, T* y, int64_t n, double alpha) {
  using C = typename Compute<T>::type;
  C al = C(alpha);
  parallelFor(n, 1, [&](int64_t i) { store(y + i, load(y + i) + al * load(x + i)); });
}

// binary(op, dtype, aId, aOff, aStrides, bId, bOff, bStrides, outId, outOff, shape)
// The output is contiguous in `shape`; it may alias a when a is contiguous (in-place add).
Napi::Value BinaryOp(const Napi::CallbackInfo& info) {
  int op = int(argInt(info, 0));
  MT_CHECK(op >= 0 && op < kNumBinary, "binary: unknown op ", op);
  DType d = toDType(int(argInt(info, 1)));
  int64_t aId = argInt(info, 2), aOff = argInt(info, 3);
  auto as = argInts(info, 4);
  int64_t bId = argInt(info, 5), bOff = argInt(info, 6);
  auto bs = argInts(info, 7);
  int64_t oId = argInt(info, 8), oOff = argInt(info, 9);
  auto shape = argInts(info, 10);
  MT_CHECK(as.size() == shape.size() && bs.size() == shape.size(), "binary: rank mismatch");
  int64_t n = 1;
  for (auto s : shape) n *= s;
  if (n == 0) return info.Env().Undefined();
  MT_DISPATCH_FLOAT(d, "binary", {
    const T* a = dataPtr<T>(aId, aOff, stridedSpan(shape, as));
    const T* b = dataPtr<T>(bId, bOff, stridedSpan(shape, bs));
    T* out = dataPtr<T>(oId, oOff, n);
    binaryDispatch<T>(op, a, b, out, shape, as, bs);
  });
  return info.Env().Undefined();
}

// binaryFlat(op, dtype, aId, aOff, bId, bOff, outId, outOff, n): both operands dense in one
// layout, no shape arrays to read (the common case, and the cheapest call).
Napi::Value BinaryFlat(const Napi::CallbackInfo& info) {
  int op = int(argInt(info, 0));
  MT_CHECK(op >= 0 && op < kNumBinary, "binary: unknown op ", op);
  DType d = toDType(int(argInt(info, 1)));
  int64_t aId = argInt(info, 2), aOff = argInt(info, 3), bId = argInt(info, 4), bOff = argInt(info, 5),
          oId = argInt(info, 6), oOff = argInt(info, 7), n = argInt(info, 8);
  if (n == 0) return info.Env().Undefined();
  MT_DISPATCH_FLOAT(d, "binary", {
    binaryFlatDispatch<T>(op, dataPtr<T>(aId, aOff, n), dataPtr<T>(bId, bOff, n), dataPtr<T>(oId, oOff, n), n);
  });
  return info.Env().Undefined();
}

// unary(op, dtype, xId, xOff, outId, outOff, n, scalar[, sId, sOff]): contiguous input and output.
// With sId, the scalar is the f64 at element sOff of storage sId instead (as the CUDA kernel reads
// it from the device); an in-place mulScalar by exactly 1 then writes nothing (gradient clipping's
// "coefficient 1: leave the gradients as they are", decided without a host read).
Napi::Value UnaryOp(const Napi::CallbackInfo& info) {
  int op = int(argInt(info, 0));
  MT_CHECK(op >= 0 && op < kNumUnary, "unary: unknown op ", op);
  DType d = toDType(int(argInt(info, 1)));
  int64_t xId = argInt(info, 2), xOff = argInt(info, 3), oId = argInt(info, 4),
          oOff = argInt(info, 5), n = argInt(info, 6);
  double s = argNum(info, 7);
  if (info.Length() > 8 && !info[8].IsUndefined()) {
    s = *dataPtr<double>(argInt(info, 8), argInt(info, 9), 1);
    if (op == kMulScalar && s == 1.0 && xId == oId && xOff == oOff) return info.Env().Undefined();
  }
  MT_DISPATCH_FLOAT(d, "unary", {
    unaryDispatch<T>(op, dataPtr<T>(xId, xOff, n), dataPtr<T>(oId, oOff, n), n, s);
  });
  return info.Env().Undefined();
}

// axpy(dtype, xId, xOff, yId, yOff, n, alpha): y += alpha * x, for gradient accumulation.
Napi::Value Axpy(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t xId = argInt(info, 1), xOff = argInt(info, 2), yId = argInt(info, 3),
          yOff = argInt(info, 4), n = argInt(info, 5);
  double alpha = argNum(info, 6);
  MT_DISPATCH_FLOAT(d, "axpy", axpyKernel<T>(dataPtr<T>(xId, xOff, n), dataPtr<T>(yId, yOff, n), n, alpha));
  return info.Env().Undefined();
}

}  // namespace

void registerElementwise(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "binary", BinaryOp);
  MT_EXPORT(exports, "binaryFlat", BinaryFlat);
  MT_EXPORT(exports, "unary", UnaryOp);
  MT_EXPORT(exports, "axpy", Axpy);
}

}  // namespace mt
