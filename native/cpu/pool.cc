// 2-D pooling: max pooling (padding reads as -inf; the argmax is kept as h*W+w for backward) and
// adaptive average pooling (PyTorch's bins: start = floor(i*H/OH), end = ceil((i+1)*H/OH)).
// Activations are logical [N, C, H, W] with any element strides; channels-last tensors (C stride 1)
// run with channels innermost, everything else plane by plane.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>
#include "tensor/storage.h"
#include "util/args.h"
#include "util/strided.h"

namespace mt {
namespace {

constexpr int64_t kParallelWork = 32768;

struct Act {
  int64_t n, c, h, w;  // element strides
  int64_t at(int64_t ni, int64_t ci, int64_t hi, int64_t wi) const { return ni * n + ci * c + hi * h + wi * w; }
};

struct PoolShape {
  int64_t N, C, H, W, OH, OW;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
};

template <typename C>
inline bool takes(C v, C best) { return v > best || std::isnan(v); }

// The input rows (or columns) that output index o reads: its window clipped to the input.
struct Span {
  int64_t lo, hi;
};
inline Span window(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t in) {
  const int64_t start = o * stride - pad;
  return {std::max<int64_t>(start, 0), std::min(start + k, in)};
}
inline Span bin(int64_t o, int64_t in, int64_t out) { return {(o * in) / out, ((o + 1) * in + out - 1) / out}; }

// Two loop orders, both correct for any strides: channels innermost (one task per image row,
// for channels-last tensors) or one plane per task (NCHW and the rest).
template <typename T>
void maxForward(const PoolShape& s, const T* x, Act xs, T* y, Act ys, int32_t* idx) {
  using C = typename Compute<T>::type;
  const C lowest = -std::numeric_limits<C>::infinity();
  const int64_t work = s.N * s.C * s.OH * s.OW * s.kh * s.kw;
  if (xs.c == 1) {
#pragma omp parallel for schedule(static) if (work > kParallelWork)
    for (int64_t r = 0; r < s.N * s.OH; r++) {
      const int64_t n = r / s.OH, oh = r % s.OH;
      const Span hs = window(oh, s.sh, s.ph, s.kh, s.H);
      std::vector<C> best(static_cast<size_t>(s.C));
      std::vector<int32_t> arg(static_cast<size_t>(s.C));
      for (int64_t ow = 0; ow < s.OW; ow++) {
        const Span ws = window(ow, s.sw, s.pw, s.kw, s.W);
        std::fill(best.begin(), best.end(), lowest);
        std::fill(arg.begin(), arg.end(), -1);
        for (int64_t h = hs.lo; h < hs.hi; h++)
          for (int64_t w = ws.lo; w < ws.hi; w++) {
            const T* px = x + n * xs.n + h * xs.h + w * xs.w;
            const int32_t pos = int32_t(h * s.W + w);
            for (int64_t c = 0; c < s.C; c++) {
              const C v = load(px + c);
              if (takes(v, best[c])) best[c] = v, arg[c] = pos;
            }
          }
        const int64_t o = n * ys.n + oh * ys.h + ow * ys.w;
        for (int64_t c = 0; c < s.C; c++) {
          store(y + o + c * ys.c, best[c]);
          idx[o + c * ys.c] = arg[c];
        }
      }
    }
    return;
  }
  // Planes: a whole output row at a time, tap by tap, so the running maxima of neighbouring
  // outputs are independent (a per-output scan is one long compare-select dependency chain).
  // Taps still reach each output in row-major window order, so ties keep the first maximum.
#pragma omp parallel for schedule(static) if (work > kParallelWork)
  for (int64_t p = 0; p < s.N * s.C; p++) {
    const int64_t n = p / s.C, c = p % s.C;
    const T* px = x + n * xs.n + c * xs.c;
    const int64_t yo = n * ys.n + c * ys.c;
    std::vector<C> best(static_cast<size_t>(s.OW));
    std::vector<int32_t> arg(static_cast<size_t>(s.OW));
    for (int64_t oh = 0; oh < s.OH; oh++) {
      const Span hs = window(oh, s.sh, s.ph, s.kh, s.H);
      std::fill(best.begin(), best.end(), lowest);
      std::fill(arg.begin(), arg.end(), -1);
      for (int64_t h = hs.lo; h < hs.hi; h++) {
        const T* row = px + h * xs.h;
        for (int64_t j = 0; j < s.kw; j++) {
          // Outputs whose tap j lands inside the row: 0 <= ow*sw - pw + j < W.
          const int64_t last = s.W - 1 + s.pw - j;  // ow*sw <= last
          if (last < 0) continue;
          const int64_t lo = std::max<int64_t>(0, (s.pw - j + s.sw - 1) / s.sw);
          const int64_t hi = std::min(s.OW, last / s.sw + 1);
          for (int64_t ow = lo; ow < hi; ow++) {
            const int64_t w = ow * s.sw - s.pw + j;
            const C v = load(row + w * xs.w);
            const bool t = takes(v, best[ow]);
            best[ow] = t ? v : best[ow];
            arg[ow] = t ? int32_t(h * s.W + w) : arg[ow];
          }
        }
      }
      for (int64_t ow = 0; ow < s.OW; ow++) {
        const int64_t o = yo + oh * ys.h + ow * ys.w;
        store(y + o, best[ow]);
        idx[o] = arg[ow];
      }
    }
  }
}

// Sets channels [c0, c1) of image n of gx to zero.
template <typename T>
void zeroImage(const PoolShape& s, T* gx, Act gxs, int64_t n, int64_t c0, int64_t c1) {
  using C = typename Compute<T>::type;
  for (int64_t h = 0; h < s.H; h++) {
    T* row = gx + n * gxs.n + h * gxs.h;
    if (c1 - c0 == 1) {
      for (int64_t w = 0; w < s.W; w++) store(row + c0 * gxs.c + w * gxs.w, C(0));
      continue;
    }
    for (int64_t w = 0; w < s.W; w++)
      for (int64_t c = c0; c < c1; c++) store(row + w * gxs.w + c * gxs.c, C(0));
  }
}

// Zeroes gradIn, then adds each output gradient at its argmax. One task per image (channels-last)
// or per plane, so no two threads write one element.
template <typename T>
void maxBackward(const PoolShape& s, const T* gy, Act gys, const int32_t* idx, Act is, T* gx, Act gxs) {
  const bool last = gxs.c == 1;
  const int64_t tasks = last ? s.N : s.N * s.C;
  const int64_t work = s.N * s.C * (s.H * s.W + s.OH * s.OW);
#pragma omp parallel for schedule(static) if (work > kParallelWork && tasks > 1)
  for (int64_t t = 0; t < tasks; t++) {
    const int64_t n = last ? t : t / s.C;
    const int64_t c0 = last ? 0 : t % s.C, c1 = last ? s.C : c0 + 1;
    zeroImage(s, gx, gxs, n, c0, c1);
    T* base = gx + n * gxs.n;
    for (int64_t oh = 0; oh < s.OH; oh++)
      for (int64_t ow = 0; ow < s.OW; ow++) {
        const T* pg = gy + n * gys.n + oh * gys.h + ow * gys.w;
        const int32_t* pi = idx + n * is.n + oh * is.h + ow * is.w;
        for (int64_t c = c0; c < c1; c++) {
          const int32_t pos = pi[c * is.c];
          if (pos < 0) continue;
          T* p = base + c * gxs.c + (pos / s.W) * gxs.h + (pos % s.W) * gxs.w;
          store(p, load(p) + load(pg + c * gys.c));
        }
      }
  }
}

template <typename T>
void avgForward(const PoolShape& s, const T* x, Act xs, T* y, Act ys) {
  using C = typename Compute<T>::type;
  const int64_t work = s.N * s.C * (s.H * s.W + s.OH * s.OW);
  if (xs.c == 1) {
#pragma omp parallel for schedule(static) if (work > kParallelWork && s.N * s.OH > 1)
    for (int64_t r = 0; r < s.N * s.OH; r++) {
      const int64_t n = r / s.OH, oh = r % s.OH;
      const Span hs = bin(oh, s.H, s.OH);
      std::vector<C> acc(static_cast<size_t>(s.C));
      for (int64_t ow = 0; ow < s.OW; ow++) {
        const Span ws = bin(ow, s.W, s.OW);
        std::fill(acc.begin(), acc.end(), C(0));
        for (int64_t h = hs.lo; h < hs.hi; h++)
          for (int64_t w = ws.lo; w < ws.hi; w++) {
            const T* px = x + n * xs.n + h * xs.h + w * xs.w;
            for (int64_t c = 0; c < s.C; c++) acc[c] += load(px + c);
          }
        const C inv = C(1) / C((hs.hi - hs.lo) * (ws.hi - ws.lo));
        T* py = y + n * ys.n + oh * ys.h + ow * ys.w;
        for (int64_t c = 0; c < s.C; c++) store(py + c * ys.c, acc[c] * inv);
      }
    }
    return;
  }
#pragma omp parallel for schedule(static) if (work > kParallelWork && s.N * s.C > 1)
  for (int64_t p = 0; p < s.N * s.C; p++) {
    const int64_t n = p / s.C, c = p % s.C;
    const T* px = x + n * xs.n + c * xs.c;
    for (int64_t oh = 0; oh < s.OH; oh++) {
      const Span hs = bin(oh, s.H, s.OH);
      for (int64_t ow = 0; ow < s.OW; ow++) {
        const Span ws = bin(ow, s.W, s.OW);
        C acc = C(0);
        for (int64_t h = hs.lo; h < hs.hi; h++) {
          const T* row = px + h * xs.h;
          for (int64_t w = ws.lo; w < ws.hi; w++) acc += load(row + w * xs.w);
        }
        store(y + n * ys.n + c * ys.c + oh * ys.h + ow * ys.w, acc / C((hs.hi - hs.lo) * (ws.hi - ws.lo)));
      }
    }
  }
}

// Spreads each output gradient evenly over its bin. Bins tile the input when the sizes divide
// (global pooling included): plain stores; otherwise they may overlap: zero, then accumulate.
template <typename T>
void avgBackward(const PoolShape& s, const T* gy, Act gys, T* gx, Act gxs) {
  using C = typename Compute<T>::type;
  const bool tiles = s.H % s.OH == 0 && s.W % s.OW == 0;
  const bool last = gxs.c == 1;
  const int64_t tasks = last ? s.N : s.N * s.C;
  const int64_t work = s.N * s.C * (s.H * s.W + s.OH * s.OW);
#pragma omp parallel for schedule(static) if (work > kParallelWork && tasks > 1)
  for (int64_t t = 0; t < tasks; t++) {
    const int64_t n = last ? t : t / s.C;
    const int64_t c0 = last ? 0 : t % s.C, c1 = last ? s.C : c0 + 1;
    if (!tiles) zeroImage(s, gx, gxs, n, c0, c1);
    for (int64_t oh = 0; oh < s.OH; oh++) {
      const Span hs = bin(oh, s.H, s.OH);
      for (int64_t ow = 0; ow < s.OW; ow++) {
        const Span ws = bin(ow, s.W, s.OW);
        const C inv = C(1) / C((hs.hi - hs.lo) * (ws.hi - ws.lo));
        const T* pg = gy + n * gys.n + oh * gys.h + ow * gys.w;
        for (int64_t c = c0; c < c1; c++) {
          const C v = load(pg + c * gys.c) * inv;
          if (!last) {
            // One plane: rows of the bin.
            for (int64_t h = hs.lo; h < hs.hi; h++) {
              T* row = gx + n * gxs.n + c * gxs.c + h * gxs.h;
              for (int64_t w = ws.lo; w < ws.hi; w++) store(row + w * gxs.w, tiles ? v : load(row + w * gxs.w) + v);
            }
          }
        }
        if (last) {
          for (int64_t h = hs.lo; h < hs.hi; h++)
            for (int64_t w = ws.lo; w < ws.hi; w++) {
              T* p = gx + n * gxs.n + h * gxs.h + w * gxs.w;
              for (int64_t c = 0; c < s.C; c++) {
                const C v = load(pg + c * gys.c) * inv;
                store(p + c, tiles ? v : load(p + c) + v);
              }
            }
        }
      }
    }
  }
}

// ---- arguments ----

Act readAct(const Napi::CallbackInfo& info, size_t i, const char* op, const char* what) {
  auto v = argInts(info, i);
  MT_CHECK(v.size() == 4, op, ": ", what, " strides must have 4 values [N, C, H, W]");
  for (auto st : v) MT_CHECK(st >= 0, op, ": negative ", what, " strides are not supported");
  return Act{v[0], v[1], v[2], v[3]};
}

// Elements from the first to the last one addressed, for the bounds check.
int64_t spanOf(const Act& a, int64_t N, int64_t C, int64_t H, int64_t W) {
  const int64_t dims[4] = {N, C, H, W}, strides[4] = {a.n, a.c, a.h, a.w};
  return stridedSpan(dims, strides, 4);
}

void checkShape(const PoolShape& s, const char* op) {
  MT_CHECK(s.N >= 0 && s.C >= 0 && s.H > 0 && s.W > 0 && s.OH > 0 && s.OW > 0, op, ": bad sizes N ",
           s.N, " C ", s.C, " H ", s.H, " W ", s.W, " OH ", s.OH, " OW ", s.OW);
  MT_CHECK(s.H * s.W <= std::numeric_limits<int32_t>::max(), op, ": planes over 2^31 elements are not supported");
}

template <typename T>
T* actPtr(const Napi::CallbackInfo& info, size_t idArg, const Act& a, int64_t N, int64_t C, int64_t H, int64_t W) {
  return dataPtr<T>(argInt(info, idArg), argInt(info, idArg + 1), spanOf(a, N, C, H, W));
}

// maxPool2dForward(dtype, xId, xOff, xStrides, outId, outOff, outStrides, idxId, idxOff,
//                  N, C, H, W, OH, OW, kh, kw, strideH, strideW, padH, padW)
// idx is i32 with the output's strides.
Napi::Value MaxPool2dForward(const Napi::CallbackInfo& info) {
  const char* op = "maxPool2dForward";
  DType d = toDType(int(argInt(info, 0)));
  PoolShape s{argInt(info, 9), argInt(info, 10), argInt(info, 11), argInt(info, 12), argInt(info, 13), argInt(info, 14)};
  s.kh = argInt(info, 15), s.kw = argInt(info, 16), s.sh = argInt(info, 17), s.sw = argInt(info, 18);
  s.ph = argInt(info, 19), s.pw = argInt(info, 20);
  checkShape(s, op);
  MT_CHECK(s.kh > 0 && s.kw > 0 && s.sh > 0 && s.sw > 0 && s.ph >= 0 && s.pw >= 0 && 2 * s.ph <= s.kh &&
               2 * s.pw <= s.kw,
           op, ": bad kernel ", s.kh, "x", s.kw, " stride ", s.sh, "x", s.sw, " padding ", s.ph, "x", s.pw);
  MT_CHECK((s.OH - 1) * s.sh - s.ph < s.H && (s.OW - 1) * s.sw - s.pw < s.W, op, ": the output is too large");
  Act xs = readAct(info, 3, op, "input"), ys = readAct(info, 6, op, "output");
  int32_t* idx = actPtr<int32_t>(info, 7, ys, s.N, s.C, s.OH, s.OW);
  MT_DISPATCH_FLOAT(d, op, {
    maxForward<T>(s, actPtr<T>(info, 1, xs, s.N, s.C, s.H, s.W), xs,
                  actPtr<T>(info, 4, ys, s.N, s.C, s.OH, s.OW), ys, idx);
  });
  return info.Env().Undefined();
}

// maxPool2dBackward(dtype, gradOutId, gradOutOff, gradOutStrides, idxId, idxOff, idxStrides,
//                   gradInId, gradInOff, gradInStrides, N, C, H, W, OH, OW)
// Writes gradIn (does not accumulate).
Napi::Value MaxPool2dBackward(const Napi::CallbackInfo& info) {
  const char* op = "maxPool2dBackward";
  DType d = toDType(int(argInt(info, 0)));
  PoolShape s{argInt(info, 10), argInt(info, 11), argInt(info, 12), argInt(info, 13), argInt(info, 14), argInt(info, 15)};
  checkShape(s, op);
  Act gys = readAct(info, 3, op, "gradOut"), is = readAct(info, 6, op, "index"), gxs = readAct(info, 9, op, "gradIn");
  const int32_t* idx = actPtr<int32_t>(info, 4, is, s.N, s.C, s.OH, s.OW);
  MT_DISPATCH_FLOAT(d, op, {
    maxBackward<T>(s, actPtr<T>(info, 1, gys, s.N, s.C, s.OH, s.OW), gys, idx, is,
                   actPtr<T>(info, 7, gxs, s.N, s.C, s.H, s.W), gxs);
  });
  return info.Env().Undefined();
}

// adaptiveAvgPool2dForward(dtype, xId, xOff, xStrides, outId, outOff, outStrides, N, C, H, W, OH, OW)
Napi::Value AdaptiveAvgPool2dForward(const Napi::CallbackInfo& info) {
  const char* op = "adaptiveAvgPool2dForward";
  DType d = toDType(int(argInt(info, 0)));
  PoolShape s{argInt(info, 7), argInt(info, 8), argInt(info, 9), argInt(info, 10), argInt(info, 11), argInt(info, 12)};
  checkShape(s, op);
  Act xs = readAct(info, 3, op, "input"), ys = readAct(info, 6, op, "output");
  MT_DISPATCH_FLOAT(d, op, {
    avgForward<T>(s, actPtr<T>(info, 1, xs, s.N, s.C, s.H, s.W), xs, actPtr<T>(info, 4, ys, s.N, s.C, s.OH, s.OW), ys);
  });
  return info.Env().Undefined();
}

// adaptiveAvgPool2dBackward(dtype, gradOutId, gradOutOff, gradOutStrides, gradInId, gradInOff,
//                           gradInStrides, N, C, H, W, OH, OW)
// Writes gradIn (does not accumulate).
Napi::Value AdaptiveAvgPool2dBackward(const Napi::CallbackInfo& info) {
  const char* op = "adaptiveAvgPool2dBackward";
  DType d = toDType(int(argInt(info, 0)));
  PoolShape s{argInt(info, 7), argInt(info, 8), argInt(info, 9), argInt(info, 10), argInt(info, 11), argInt(info, 12)};
  checkShape(s, op);
  Act gys = readAct(info, 3, op, "gradOut"), gxs = readAct(info, 6, op, "gradIn");
  MT_DISPATCH_FLOAT(d, op, {
    avgBackward<T>(s, actPtr<T>(info, 1, gys, s.N, s.C, s.OH, s.OW), gys, actPtr<T>(info, 4, gxs, s.N, s.C, s.H, s.W), gxs);
  });
  return info.Env().Undefined();
}

}  // namespace

void registerPool(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "maxPool2dForward", MaxPool2dForward);
  MT_EXPORT(exports, "maxPool2dBackward", MaxPool2dBackward);
  MT_EXPORT(exports, "adaptiveAvgPool2dForward", AdaptiveAvgPool2dForward);
  MT_EXPORT(exports, "adaptiveAvgPool2dBackward", AdaptiveAvgPool2dBackward);
}

}  // namespace mt
