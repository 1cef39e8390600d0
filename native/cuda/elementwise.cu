// Element-wise kernels: broadcasting binary ops (strides of 0 broadcast), unary ops with a scalar,
// and axpy. The formulas and op codes are native/cpu/elementwise.cc's (the reference).
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "cuda/vec.cuh"

namespace mt {
namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluC = 0.044715;

enum Binary { kAdd, kSub, kMul, kDiv, kMax, kMin, kPow, kReluBackward, kGeluBackward, kTanhBackward, kSigmoidBackward, kNumBinary };
enum Unary {
  kNeg, kExp, kLog, kSqrt, kRsqrt, kRelu, kGelu, kTanh, kSigmoid, kAbs,
  kAddScalar, kMulScalar, kPowScalar, kReciprocal, kSquare, kNumUnary
};

template <typename C>
__device__ __forceinline__ C binaryOp(int op, C a, C b) {
  switch (op) {
    case kAdd: return a + b;
    case kSub: return a - b;
    case kMul: return a * b;
    case kDiv: return a / b;
    case kMax: return a > b ? a : b;
    case kMin: return a < b ? a : b;
    case kPow: return pow(a, b);
    case kReluBackward: return b > C(0) ? a : C(0);
    case kGeluBackward: {
      C x2 = b * b, inner = C(kSqrt2OverPi) * (b + C(kGeluC) * x2 * b);
      C t = tanh(inner);
      C dinner = C(kSqrt2OverPi) * (C(1) + C(3 * kGeluC) * x2);
      return a * (C(0.5) * (C(1) + t) + C(0.5) * b * (C(1) - t * t) * dinner);
    }
    case kTanhBackward: return a * (C(1) - b * b);
    case kSigmoidBackward: return a * b * (C(1) - b);
  }
  return C(0);
}

template <typename C>
__device__ __forceinline__ C unaryOp(int op, C x, C s) {
  switch (op) {
    case kNeg: return -x;
    case kExp: return exp(x);
    case kLog: return log(x);
    case kSqrt: return sqrt(x);
    case kRsqrt: return C(1) / sqrt(x);
    case kRelu: return x > C(0) ? x : C(0);
    case kGelu: return C(0.5) * x * (C(1) + tanh(C(kSqrt2OverPi) * (x + C(kGeluC) * x * x * x)));
    case kTanh: return tanh(x);
    case kSigmoid: return C(1) / (C(1) + exp(-x));
    case kAbs: return fabs(x);
    case kAddScalar: return x + s;
    case kMulScalar: return x * s;
    case kPowScalar: return pow(x, s);
    case kReciprocal: return C(1) / x;
    case kSquare: return x * x;
  }
  return C(0);
}

// The op is uniform across the grid, so the switch costs a predictable branch, not divergence.
template <typename T>
__global__ void binaryStrided(int op, const T* a, const T* b, T* out, cu::Dims2 d, int64_t n) {
  MT_CU_LOOP(i, n) {
    int64_t ao, bo;
    cu::offsets2(d, i, &ao, &bo);
    cu::st(out + i, binaryOp(op, cu::ld(a + ao), cu::ld(b + bo)));
  }
}

// Rows of length L, each operand either a row of its own (row stride L) or one row repeated (row
// stride 0): a bias or a position table added over the leading dims. Element i's offsets are
// (i / L) * stride + i % L; when `vec` (L a multiple of the vector, pointers 16-byte aligned) a
// vector never crosses a row, so it moves 16 bytes per access as the flat kernels do.
template <typename T>
__global__ void binaryRows(int op, const T* a, int64_t as, const T* b, int64_t bs, T* out, int64_t L, int64_t n, bool vec) {
  using V = cu::Vec<T>;
  const int64_t nv = cu::vectorCount<T>(n, vec);
  MT_CU_VEC_LOOP(T, iv, nv) {
    const int64_t i = iv * cu::kVec<T>, r = i / L, c = i - r * L;
    const V va = *reinterpret_cast<const V*>(a + r * as + c), vb = *reinterpret_cast<const V*>(b + r * bs + c);
    V vo;
#pragma unroll
    for (int k = 0; k < cu::kVec<T>; k++) cu::st(vo.v + k, binaryOp(op, cu::ld(va.v + k), cu::ld(vb.v + k)));
    reinterpret_cast<V*>(out)[iv] = vo;
  }
  MT_CU_TAIL_LOOP(T, i, nv, n) {
    const int64_t r = i / L, c = i - r * L;
    cu::st(out + i, binaryOp(op, cu::ld(a + r * as + c), cu::ld(b + r * bs + c)));
  }
}

// The flat kernels move 16 bytes per access when `vec` (all pointers 16-byte aligned).
template <typename T>
__global__ void binaryFlat(int op, const T* a, const T* b, T* out, int64_t n, bool vec) {
  using V = cu::Vec<T>;
  const int64_t nv = cu::vectorCount<T>(n, vec);
  MT_CU_VEC_LOOP(T, iv, nv) {
    const V va = reinterpret_cast<const V*>(a)[iv], vb = reinterpret_cast<const V*>(b)[iv];
    V vo;
#pragma unroll
    for (int k = 0; k < cu::kVec<T>; k++) cu::st(vo.v + k, binaryOp(op, cu::ld(va.v + k), cu::ld(vb.v + k)));
    reinterpret_cast<V*>(out)[iv] = vo;
  }
  MT_CU_TAIL_LOOP(T, i, nv, n) cu::st(out + i, binaryOp(op, cu::ld(a + i), cu::ld(b + i)));
}

// kDeviceScalar: s is *sp (an f64 a kernel queued before wrote: nothing read by the host), converted
// as the host converts a by-value scalar; an in-place mulScalar by exactly 1 writes nothing.
template <typename T, bool kDeviceScalar>
__global__ void unaryFlat(int op, const T* x, T* out, int64_t n, typename cu::Acc<T>::type s, const double* sp, bool vec) {
  using V = cu::Vec<T>;
  if constexpr (kDeviceScalar) {
    const double d = *sp;
    if (op == kMulScalar && d == 1.0 && x == out) return;
    s = typename cu::Acc<T>::type(d);
  }
  const int64_t nv = cu::vectorCount<T>(n, vec);
  MT_CU_VEC_LOOP(T, iv, nv) {
    const V vx = reinterpret_cast<const V*>(x)[iv];
    V vo;
#pragma unroll
    for (int k = 0; k < cu::kVec<T>; k++) cu::st(vo.v + k, unaryOp(op, cu::ld(vx.v + k), s));
    reinterpret_cast<V*>(out)[iv] = vo;
  }
  MT_CU_TAIL_LOOP(T, i, nv, n) cu::st(out + i, unaryOp(op, cu::ld(x + i), s));
}

template <typename T>
__global__ void axpyFlat(const T* x, T* y, int64_t n, typename cu::Acc<T>::type alpha, bool vec) {
  using V = cu::Vec<T>;
  const int64_t nv = cu::vectorCount<T>(n, vec);
  MT_CU_VEC_LOOP(T, iv, nv) {
    const V vx = reinterpret_cast<const V*>(x)[iv];
    V vy = reinterpret_cast<V*>(y)[iv];
#pragma unroll
    for (int k = 0; k < cu::kVec<T>; k++) cu::st(vy.v + k, cu::ld(vy.v + k) + alpha * cu::ld(vx.v + k));
    reinterpret_cast<V*>(y)[iv] = vy;
  }
  MT_CU_TAIL_LOOP(T, i, nv, n) cu::st(y + i, cu::ld(y + i) + alpha * cu::ld(x + i));
}

// binaryRows' layout, if the operands have it: L is the product of the trailing dims both run
// along contiguously; over the leading dims each operand must be dense (stride L x the leading
// dims after it) or broadcast (stride 0). Size-1 dims fit either way. False otherwise.
struct RowLayout {
  int64_t L, as, bs;
};
bool rowLayout(const int64_t* shape, const int64_t* as, const int64_t* bs, int nd, RowLayout* out) {
  int64_t L = 1;
  int k = nd;
  while (k > 0 && (shape[k - 1] == 1 || (as[k - 1] == L && bs[k - 1] == L))) L *= shape[--k];
  if (L < 2) return false;
  // Per operand, over dims [0, k): whether every stride is the dense one, and whether every one is 0.
  bool dense[2] = {true, true}, zero[2] = {true, true};
  int64_t span = L;
  for (int j = k - 1; j >= 0; j--) {
    if (shape[j] == 1) continue;
    const int64_t st[2] = {as[j], bs[j]};
    for (int x = 0; x < 2; x++) {
      dense[x] = dense[x] && st[x] == span;
      zero[x] = zero[x] && st[x] == 0;
    }
    span *= shape[j];
  }
  if (!(dense[0] || zero[0]) || !(dense[1] || zero[1])) return false;
  *out = {L, dense[0] ? L : 0, dense[1] ? L : 0};
  return true;
}

void checkOp(const char* what, int op, int count) {
  if (op < 0 || op >= count) cu::fail(std::string(what) + ": unknown op code " + std::to_string(op));
}

}  // namespace

void cudaBinary(int dev, int op, int dtype, const void* a, const int64_t* as, const void* b, const int64_t* bs,
                void* out, const int64_t* shape, int nd) {
  checkOp("binary", op, kNumBinary);
  if (nd > cu::kMaxDims) cu::fail("binary: more than 8 dims");
  cu::Dims2 d{};
  d.nd = nd;
  int64_t n = 1;
  for (int k = 0; k < nd; k++) {
    d.shape[k] = shape[k];
    d.s0[k] = as[k];
    d.s1[k] = bs[k];
    n *= shape[k];
  }
  if (n == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  RowLayout rows;
  if (rowLayout(shape, as, bs, nd, &rows)) {
    MT_CU_FLOAT(dtype, "binary", {
      const bool vec = rows.L % cu::kVec<T> == 0 && cu::aligned16(a) && cu::aligned16(b) && cu::aligned16(out);
      MT_LAUNCH(binaryRows<T>, cu::blocksFor(n, vec ? cu::kVec<T> : 1), cu::kThreads, 0, s, op, static_cast<const T*>(a), rows.as,
                static_cast<const T*>(b), rows.bs, static_cast<T*>(out), rows.L, n, vec);
    });
    cu::checkLaunch("binaryRows");
    return;
  }
  MT_CU_FLOAT(dtype, "binary",
              MT_LAUNCH(binaryStrided<T>, cu::blocksFor(n), cu::kThreads, 0, s, op, static_cast<const T*>(a), static_cast<const T*>(b),
                        static_cast<T*>(out), d, n));
  cu::checkLaunch("binary");
}

void cudaBinaryFlat(int dev, int op, int dtype, const void* a, const void* b, void* out, int64_t n) {
  checkOp("binary", op, kNumBinary);
  if (n == 0) return;
  const bool vec = cu::aligned16(a) && cu::aligned16(b) && cu::aligned16(out);
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "binary",
              MT_LAUNCH(binaryFlat<T>, cu::blocksFor(n, cu::kVec<T>), cu::kThreads, 0, s, op, static_cast<const T*>(a),
                        static_cast<const T*>(b), static_cast<T*>(out), n, vec));
  cu::checkLaunch("binaryFlat");
}

void cudaUnary(int dev, int op, int dtype, const void* x, void* out, int64_t n, double scalar, const double* scalarPtr) {
  checkOp("unary", op, kNumUnary);
  if (n == 0) return;
  const bool vec = cu::aligned16(x) && cu::aligned16(out);
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "unary", {
    using C = typename cu::Acc<T>::type;
    if (scalarPtr) {
      MT_LAUNCH((unaryFlat<T, true>), cu::blocksFor(n, cu::kVec<T>), cu::kThreads, 0, s, op, static_cast<const T*>(x),
                static_cast<T*>(out), n, C(0), scalarPtr, vec);
    } else {
      MT_LAUNCH((unaryFlat<T, false>), cu::blocksFor(n, cu::kVec<T>), cu::kThreads, 0, s, op, static_cast<const T*>(x),
                static_cast<T*>(out), n, C(scalar), static_cast<const double*>(nullptr), vec);
    }
  });
  cu::checkLaunch("unary");
}

void cudaAxpy(int dev, int dtype, const void* x, void* y, int64_t n, double alpha) {
  if (n == 0) return;
  const bool vec = cu::aligned16(x) && cu::aligned16(y);
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(dtype, "axpy", {
    using C = typename cu::Acc<T>::type;
    MT_LAUNCH(axpyFlat<T>, cu::blocksFor(n, cu::kVec<T>), cu::kThreads, 0, s, static_cast<const T*>(x), static_cast<T*>(y), n,
              C(alpha), vec);
  });
  cu::checkLaunch("axpy");
}

}  // namespace mt
