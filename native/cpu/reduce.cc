// Reductions over the middle axis of a [outer, r, inner] view of a contiguous tensor; a set of
// adjacent dims is one such view, so sum/mean/max over any dims compose from this kernel.
#include <algorithm>
#include <limits>
#include <vector>
#include "tensor/storage.h"
#include "util/args.h"
#include "util/parallel.h"

namespace mt {
namespace {

enum Reduce { kSum = 0, kMax = 1 };

// f32 and 16-bit sums accumulate in double: long reductions stay accurate.
using Acc = double;

inline Acc identity(int op) { return op == kSum ? Acc(0) : -std::numeric_limits<Acc>::infinity(); }

// Folds rows [k0, k1) of one [r, inner] slab into acc[inner].
template <typename T>
void foldRows(int op, const T* base, int64_t k0, int64_t k1, int64_t inner, Acc* acc) {
  if (inner == 1 && op == kSum) {
    // Eight independent partial sums: no chain of dependent adds, and the loop vectorizes.
    Acc lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t k = k0;
    for (; k + 8 <= k1; k += 8)
      for (int j = 0; j < 8; j++) lane[j] += Acc(load(base + k + j));
    for (; k < k1; k++) lane[0] += Acc(load(base + k));
    acc[0] += ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    return;
  }
  for (int64_t k = k0; k < k1; k++) {
    const T* row = base + k * inner;
    if (op == kSum) {
      for (int64_t i = 0; i < inner; i++) acc[i] += Acc(load(row + i));
    } else {
      for (int64_t i = 0; i < inner; i++) {
        Acc v = Acc(load(row + i));
        if (v > acc[i]) acc[i] = v;
      }
    }
  }
}

template <typename T>
void reduceKernel(int op, const T* x, T* out, int64_t outer, int64_t r, int64_t inner, double scale) {
  auto finish = [&](int64_t o, const Acc* acc) {
    for (int64_t i = 0; i < inner; i++) store(out + o * inner + i, op == kSum ? acc[i] * scale : acc[i]);
  };
  // Few slabs (a full sum, a bias gradient): split the reduced axis into chunks whose size
  // depends only on the shape, and fold the partials in chunk order, so the result does not
  // depend on the thread count.
  const int64_t chunk = std::max<int64_t>(1, 65536 / std::max<int64_t>(inner, 1));
  const int64_t nChunks = (r + chunk - 1) / chunk;
  if (outer < 4 && nChunks > 1) {
    std::vector<Acc> partial(size_t(nChunks * inner));
    for (int64_t o = 0; o < outer; o++) {
      const T* base = x + o * r * inner;
      parallelFor(nChunks, chunk * inner, [&](int64_t c) {
        Acc* acc = partial.data() + c * inner;
        std::fill(acc, acc + inner, identity(op));
        foldRows(op, base, c * chunk, std::min(r, (c + 1) * chunk), inner, acc);
      });
      std::vector<Acc> total(size_t(inner), identity(op));
      for (int64_t c = 0; c < nChunks; c++) {
        const Acc* acc = partial.data() + c * inner;
        for (int64_t i = 0; i < inner; i++) total[i] = op == kSum ? total[i] + acc[i] : std::max(total[i], acc[i]);
      }
      finish(o, total.data());
    }
    return;
  }
  parallelFor(outer, r * inner, [&](int64_t o) {
    std::vector<Acc> acc(size_t(inner), identity(op));
    foldRows(op, x + o * r * inner, 0, r, inner, acc.data());
    finish(o, acc.data());
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
