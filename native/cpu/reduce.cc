// Reductions over the middle axis of a [outer, r, inner] view of a contiguous tensor; a set of
// adjacent dims is one such view, so sum/mean/max over any dims compose from this kernel.
#include <limits>
#include <vector>
#include "tensor/storage.h"
#include "util/args.h"
#include "util/parallel.h"

namespace mt {
namespace {

enum Reduce { kSum = 0, kMax = 1 };

template <typename T>
void reduceKernel(int op, const T* x, T* out, int64_t outer, int64_t r, int64_t inner,
                  double scale) {
  // f32 and 16-bit sums accumulate in double: long reductions stay accurate.
  using A = double;
  parallelFor(outer, r * inner, [&](int64_t o) {
    const T* base = x + o * r * inner;
    if (inner == 1) {
      A acc = op == kSum ? A(0) : -std::numeric_limits<A>::infinity();
      for (int64_t k = 0; k < r; k++) {
        A v = A(load(base + k));
        acc = op == kSum ? acc + v : (v > acc ? v : acc);
      }
      store(out + o, op == kSum ? acc * scale : acc);
    } else {
      std::vector<A> acc(size_t(inner), op == kSum ? A(0) : -std::numeric_limits<A>::infinity());
      for (int64_t k = 0; k < r; k++) {
        const T* row = base + k * inner;
        if (op == kSum) {
          for (int64_t i = 0; i < inner; i++) acc[i] += A(load(row + i));
        } else {
          for (int64_t i = 0; i < inner; i++) {
            A v = A(load(row + i));
            if (v > acc[i]) acc[i] = v;
          }
        }
      }
      for (int64_t i = 0; i < inner; i++) store(out + o * inner + i, op == kSum ? acc[i] * scale : acc[i]);
    }
  });
}

// reduce(op, dtype, xId, xOff, outId, outOff, outer, r, inner, scale)
Napi::Value ReduceOp(const Napi::CallbackInfo& info) {
  int op = int(argInt(info, 0));
  MT_CHECK(op == kSum || op == kMax, "reduce: unknown op ", op);
  DType d = toDType(int(argInt(info, 1)));
  int64_t xId = argInt(info, 2), xOff = argInt(info, 3), oId = argInt(info, 4),
          oOff = argInt(info, 5), outer = argInt(info, 6), r = argInt(info, 7),
          inner = argInt(info, 8);
  double scale = argNum(info, 9);
  MT_DISPATCH_FLOAT(d, "reduce", {
    reduceKernel<T>(op, dataPtr<T>(xId, xOff, outer * r * inner),
                    dataPtr<T>(oId, oOff, outer * inner), outer, r, inner, scale);
  });
  return info.Env().Undefined();
}

}  // namespace

void registerReduce(Napi::Env env, Napi::Object exports) { MT_EXPORT(exports, "reduce", ReduceOp); }

}  // namespace mt
