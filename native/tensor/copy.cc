// Strided copy with dtype conversion (contiguous(), permute materialization, casts) and fill.
#include <vector>
#include "tensor/storage.h"
#include "util/args.h"
#include "util/parallel.h"
#include "util/strided.h"

namespace mt {
namespace {

// Visits every index of `shape`; the innermost dimension runs as a tight loop.
template <typename S, typename D>
void copyKernel(const S* src, D* dst, const std::vector<int64_t>& shape,
                const std::vector<int64_t>& ss, const std::vector<int64_t>& ds) {
  int nd = int(shape.size());
  if (nd == 0) {
    store(dst, load(src));
    return;
  }
  int64_t inner = shape[nd - 1], sIn = ss[nd - 1], dIn = ds[nd - 1];
  int64_t outer = 1;
  for (int k = 0; k < nd - 1; k++) outer *= shape[k];
  parallelRows(outer, inner, [&](int64_t o, int64_t i0, int64_t i1) {
    int64_t so, dof;
    rowOffsets(o, shape, ss, ds, &so, &dof);
    const S* s = src + so;
    D* d = dst + dof;
    if (sIn == 1 && dIn == 1) {
      for (int64_t i = i0; i < i1; i++) store(d + i, load(s + i));
    } else {
      for (int64_t i = i0; i < i1; i++) store(d + i * dIn, load(s + i * sIn));
    }
  });
}

template <typename T>
void fillKernel(T* p, int64_t n, double v) {
  T val;
  store(&val, v);
  parallelFor(n, 1, [&](int64_t i) { p[i] = val; });
}

// copyStrided(srcDtype, srcId, srcOff, srcStrides, dstDtype, dstId, dstOff, dstStrides, shape)
Napi::Value CopyStrided(const Napi::CallbackInfo& info) {
  DType sd = toDType(int(argInt(info, 0)));
  int64_t sId = argInt(info, 1), sOff = argInt(info, 2);
  auto ss = argInts(info, 3);
  DType dd = toDType(int(argInt(info, 4)));
  int64_t dId = argInt(info, 5), dOff = argInt(info, 6);
  auto ds = argInts(info, 7);
  auto shape = argInts(info, 8);
  MT_CHECK(ss.size() == shape.size() && ds.size() == shape.size(), "copy: rank mismatch");
  for (size_t k = 0; k < shape.size(); k++) MT_CHECK(ss[k] >= 0 && ds[k] >= 0, "copy: negative strides are not supported");
  int64_t sSpan = stridedSpan(shape, ss), dSpan = stridedSpan(shape, ds);
  if (sSpan == 0) return info.Env().Undefined();
  MT_DISPATCH_ALL(sd, {
    using S = T;
    const S* src = dataPtr<S>(sId, sOff, sSpan);
    MT_DISPATCH_ALL(dd, {
      T* dst = dataPtr<T>(dId, dOff, dSpan);
      copyKernel<S, T>(src, dst, shape, ss, ds);
    });
  });
  return info.Env().Undefined();
}

// fill(dtype, id, off, n, value)
Napi::Value Fill(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  int64_t id = argInt(info, 1), off = argInt(info, 2), n = argInt(info, 3);
  double v = argNum(info, 4);
  MT_DISPATCH_ALL(d, fillKernel<T>(dataPtr<T>(id, off, n), n, v));
  return info.Env().Undefined();
}

}  // namespace

void registerCopy(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "copyStrided", CopyStrided);
  MT_EXPORT(exports, "fill", Fill);
}

}  // namespace mt
