// 2-D pooling: max pooling (padding reads as -inf; the argmax is kept as h*W+w for backward) and
// adaptive average pooling (PyTorch's bins: start = floor(i*H/OH), end = ceil((i+1)*H/OH)).
// Activations are logical [N, C, H, W] with element strides; channels-last tensors (C stride 1)
// run with channels innermost, everything else plane by plane.
#include <cmath>
#include <limits>
#include <vector>
#include "tensor/storage.h"
#include "util/args.h"

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

int64_t binStart(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
int64_t binEnd(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

template <typename C>
inline bool takes(C v, C best) { return v > best || std::isnan(v); }

template <typename T>
void maxForward(const PoolShape& s, const T* x, Act xs, T* y, Act ys, int32_t* idx) {
  using C = typename Compute<T>::type;
  const C lowest = -std::numeric_limits<C>::infinity();
  const int64_t work = s.N * s.C * s.OH * s.OW * s.kh * s.kw;
  if (xs.c == 1 && ys.c == 1) {
#pragma omp parallel for schedule(static) if (work > kParallelWork)
    for (int64_t r = 0; r < s.N * s.OH; r++) {
      const int64_t n = r / s.OH, oh = r % s.OH;
      std::vector<C> best(size_t(s.C));
      std::vector<int32_t> arg(size_t(s.C));
      for (int64_t ow = 0; ow < s.OW; ow++) {
        std::fill(best.begin(), best.end(), lowest);
        std::fill(arg.begin(), arg.end(), -1);
        for (int64_t i = 0; i < s.kh; i++) {
          const int64_t h = oh * s.sh - s.ph + i;
          if (h < 0 || h >= s.H) continue;
          for (int64_t j = 0; j < s.kw; j++) {
            const int64_t w = ow * s.sw - s.pw + j;
            if (w < 0 || w >= s.W) continue;
            const T* px = x + xs.at(n, 0, h, w);
            const int32_t pos = int32_t(h * s.W + w);
            for (int64_t c = 0; c < s.C; c++) {
              const C v = load(px + c);
              if (takes(v, best[c])) best[c] = v, arg[c] = pos;
            }
          }
        }
        const int64_t o = ys.at(n, 0, oh, ow);
        for (int64_t c = 0; c < s.C; c++) {
          store(y + o + c, best[c]);
          idx[o + c] = arg[c];
        }
      }
    }
    return;
  }
#pragma omp parallel for schedule(static) if (work > kParallelWork)
  for (int64_t p = 0; p < s.N * s.C; p++) {
    const int64_t n = p / s.C, c = p % s.C;
    for (int64_t oh = 0; oh < s.OH; oh++)
      for (int64_t ow = 0; ow < s.OW; ow++) {
        C best = lowest;
        int32_t arg = -1;
        for (int64_t i = 0; i < s.kh; i++) {
          const int64_t h = oh * s.sh - s.ph + i;
          if (h < 0 || h >= s.H) continue;
          for (int64_t j = 0; j < s.kw; j++) {
            const int64_t w = ow * s.sw - s.pw + j;
            if (w < 0 || w >= s.W) continue;
            const C v = load(x + xs.at(n, c, h, w));
            if (takes(v, best)) best = v, arg = int32_t(h * s.W + w);
          }
        }
        const int64_t o = ys.at(n, c, oh, ow);
        store(y + o, best);
        idx[o] = arg;
      }
  }
}

// Zeroes gradIn (any strides), then adds each output gradient at its argmax. Parallel over
// images (channels-last) or planes, so no two threads write one element.
template <typename T>
void maxBackward(const PoolShape& s, const T* gy, Act gys, const int32_t* idx, Act is, T* gx, Act gxs) {
  using C = typename Compute<T>::type;
  const bool last = gxs.c == 1;
  const int64_t tasks = last ? s.N : s.N * s.C;
  const int64_t work = s.N * s.C * (s.H * s.W + s.OH * s.OW);
#pragma omp parallel for schedule(static) if (work > kParallelWork && tasks > 1)
  for (int64_t t = 0; t < tasks; t++) {
    const int64_t n = last ? t : t / s.C;
    const int64_t c0 = last ? 0 : t % s.C, c1 = last ? s.C : c0 + 1;
    for (int64_t h = 0; h < s.H; h++)
      for (int64_t w = 0; w < s.W; w++)
        for (int64_t c = c0; c < c1; c++) store(gx + gxs.at(n, c, h, w), C(0));
    for (int64_t oh = 0; oh < s.OH; oh++)
      for (int64_t ow = 0; ow < s.OW; ow++)
        for (int64_t c = c0; c < c1; c++) {
          const int32_t pos = idx[is.at(n, c, oh, ow)];
          if (pos < 0) continue;
          T* p = gx + gxs.at(n, c, pos / s.W, pos % s.W);
          store(p, load(p) + load(gy + gys.at(n, c, oh, ow)));
        }
  }
}

template <typename T>
void avgForward(const PoolShape& s, const T* x, Act xs, T* y, Act ys) {
  using C = typename Compute<T>::type;
  const int64_t work = s.N * s.C * (s.H * s.W + s.OH * s.OW);
  const bool last = xs.c == 1 && ys.c == 1;
  const int64_t tasks = last ? s.N * s.OH : s.N * s.C;
#pragma omp parallel for schedule(static) if (work > kParallelWork && tasks > 1)
  for (int64_t t = 0; t < tasks; t++) {
    const int64_t n = last ? t / s.OH : t / s.C;
    const int64_t c0 = last ? 0 : t % s.C, c1 = last ? s.C : c0 + 1;
    const int64_t oh0 = last ? t % s.OH : 0, oh1 = last ? oh0 + 1 : s.OH;
    std::vector<C> acc(size_t(c1 - c0));
    for (int64_t oh = oh0; oh < oh1; oh++) {
      const int64_t h0 = binStart(oh, s.H, s.OH), h1 = binEnd(oh, s.H, s.OH);
      for (int64_t ow = 0; ow < s.OW; ow++) {
        const int64_t w0 = binStart(ow, s.W, s.OW), w1 = binEnd(ow, s.W, s.OW);
        std::fill(acc.begin(), acc.end(), C(0));
        for (int64_t h = h0; h < h1; h++)
          for (int64_t w = w0; w < w1; w++)
            for (int64_t c = c0; c < c1; c++) acc[c - c0] += load(x + xs.at(n, c, h, w));
        const C inv = C(1) / C((h1 - h0) * (w1 - w0));
        for (int64_t c = c0; c < c1; c++) store(y + ys.at(n, c, oh, ow), acc[c - c0] * inv);
      }
    }
  }
}

// Zeroes gradIn, then spreads each output gradient evenly over its bin (bins may overlap).
template <typename T>
void avgBackward(const PoolShape& s, const T* gy, Act gys, T* gx, Act gxs) {
  using C = typename Compute<T>::type;
  const bool last = gxs.c == 1;
  const int64_t tasks = last ? s.N : s.N * s.C;
  const int64_t work = s.N * s.C * (s.H * s.W + s.OH * s.OW);
#pragma omp parallel for schedule(static) if (work > kParallelWork && tasks > 1)
  for (int64_t t = 0; t < tasks; t++) {
    const int64_t n = last ? t : t / s.C;
    const int64_t c0 = last ? 0 : t % s.C, c1 = last ? s.C : c0 + 1;
    for (int64_t h = 0; h < s.H; h++)
      for (int64_t w = 0; w < s.W; w++)
        for (int64_t c = c0; c < c1; c++) store(gx + gxs.at(n, c, h, w), C(0));
    for (int64_t oh = 0; oh < s.OH; oh++) {
      const int64_t h0 = binStart(oh, s.H, s.OH), h1 = binEnd(oh, s.H, s.OH);
      for (int64_t ow = 0; ow < s.OW; ow++) {
        const int64_t w0 = binStart(ow, s.W, s.OW), w1 = binEnd(ow, s.W, s.OW);
        const C inv = C(1) / C((h1 - h0) * (w1 - w0));
        for (int64_t h = h0; h < h1; h++)
          for (int64_t w = w0; w < w1; w++)
            for (int64_t c = c0; c < c1; c++) {
              T* p = gx + gxs.at(n, c, h, w);
              store(p, load(p) + load(gy + gys.at(n, c, oh, ow)) * inv);
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
  if (N == 0 || C == 0 || H == 0 || W == 0) return 0;
  return a.at(N - 1, C - 1, H - 1, W - 1) + 1;
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
