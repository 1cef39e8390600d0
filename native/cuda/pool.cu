// 2-D pooling: max pooling (padding reads as -inf, NaN wins, the argmax kept as h*W+w) and
// adaptive average pooling (PyTorch's bins). Forward: one thread per output, its window read in
// row-major order, as the CPU does. Backward: one thread per input element gathering, in output
// order, the gradients of the windows that cover it (max: those whose argmax it is), rounded to
// the dtype after each addition — the CPU's scatter in output order, element by element, so the
// results are the same bits and need no atomics. Activations may have any strides; threads take
// elements in the written tensor's memory order (channels fastest when channels-last), so
// neighbouring threads touch neighbouring addresses.
// Reference: native/cpu/pool.cc.
#include "cuda/common.cuh"
#include "cuda/image_ops.h"
#include "cuda/runtime.h"

namespace mt {
namespace {

struct Geo {
  int64_t N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw;
  int64_t a[4], b[4], c[4];  // element strides of up to three tensors
  bool cl;                    // the written tensor is channels-last: threads walk C fastest
};

// `written` is the strides of the output the kernel writes.
Geo geoOf(const CudaPoolShape& s, const int64_t* written, const int64_t* a, const int64_t* b,
          const int64_t* c = nullptr) {
  Geo g{s.N, s.C, s.H, s.W, s.OH, s.OW, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, {}, {}, {}, false};
  for (int k = 0; k < 4; k++) g.a[k] = a[k], g.b[k] = b[k], g.c[k] = c ? c[k] : 0;
  g.cl = s.C > 1 && written[1] == 1;
  return g;
}

// Coordinates of thread index i over [N, C, P, Q] ([N, P, Q, C] order when channels-last).
struct Coord {
  int64_t n, c, p, q;
};
__device__ __forceinline__ Coord coordOf(int64_t i, int64_t C, int64_t P, int64_t Q, bool cl) {
  Coord r;
  if (cl) {
    r.c = i % C, i /= C;
    r.q = i % Q, i /= Q;
    r.p = i % P, r.n = i / P;
  } else {
    r.q = i % Q, i /= Q;
    r.p = i % P, i /= P;
    r.c = i % C, r.n = i / C;
  }
  return r;
}

__device__ __forceinline__ int64_t off(const int64_t* s, int64_t n, int64_t c, int64_t h, int64_t w) {
  return n * s[0] + c * s[1] + h * s[2] + w * s[3];
}

template <typename A>
__device__ __forceinline__ bool takes(A v, A best) { return v > best || v != v; }

// Adaptive bin of output o over an input of `in`: [floor(o*in/out), ceil((o+1)*in/out)).
__device__ __forceinline__ int64_t binLo(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
__device__ __forceinline__ int64_t binHi(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

// The input window of an output: rows [hLo, hHi), columns [wLo, wHi).
struct Window {
  int64_t hLo, hHi, wLo, wHi;
};

// Max pooling keeps the value that wins (NaN wins) and its first position h*W+w; padding reads as
// -inf, so the window is clipped to the input.
template <typename T>
struct MaxReduce {
  using A = typename cu::Acc<T>::type;
  struct Acc {
    A best;
    int32_t arg;
  };
  int32_t* idx;
  __device__ __forceinline__ static Window window(const Geo& g, int64_t oh, int64_t ow) {
    const int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
    return {h0 < 0 ? 0 : h0, h0 + g.kh < g.H ? h0 + g.kh : g.H, w0 < 0 ? 0 : w0, w0 + g.kw < g.W ? w0 + g.kw : g.W};
  }
  __device__ __forceinline__ Acc start() const { return {-A(CUDART_INF), -1}; }
  __device__ __forceinline__ void add(Acc& a, A v, const Geo& g, int64_t h, int64_t w) const {
    if (takes(v, a.best)) a.best = v, a.arg = int32_t(h * g.W + w);
  }
  __device__ __forceinline__ void store(const Acc& a, const Window&, T* y, int64_t o) const {
    cu::st(y + o, a.best);
    idx[o] = a.arg;
  }
};

// Adaptive average pooling over PyTorch's bins. The CPU divides in its plane loop and multiplies by
// 1/count in its channels-last loop; `byInverse` picks the same rounding.
template <typename T>
struct AvgReduce {
  using A = typename cu::Acc<T>::type;
  using Acc = A;
  bool byInverse;
  __device__ __forceinline__ static Window window(const Geo& g, int64_t oh, int64_t ow) {
    return {binLo(oh, g.H, g.OH), binHi(oh, g.H, g.OH), binLo(ow, g.W, g.OW), binHi(ow, g.W, g.OW)};
  }
  __device__ __forceinline__ Acc start() const { return A(0); }
  __device__ __forceinline__ void add(Acc& a, A v, const Geo&, int64_t, int64_t) const { a += v; }
  __device__ __forceinline__ void store(const Acc& a, const Window& k, T* y, int64_t o) const {
    const A count = A((k.hHi - k.hLo) * (k.wHi - k.wLo));
    cu::st(y + o, byInverse ? a * (A(1) / count) : a / count);
  }
};

// One thread per output: its window read in row-major order (as the CPU does) into R's accumulator.
template <typename T, typename R>
__global__ void forwardKernel(Geo g, const T* x, T* y, R red) {
  MT_CU_LOOP(i, g.N * g.C * g.OH * g.OW) {
    const Coord k = coordOf(i, g.C, g.OH, g.OW, g.cl);
    const Window win = R::window(g, k.p, k.q);
    auto acc = red.start();
    for (int64_t h = win.hLo; h < win.hHi; h++)
      for (int64_t w = win.wLo; w < win.wHi; w++) red.add(acc, cu::ld(x + off(g.a, k.n, k.c, h, w)), g, h, w);
    red.store(acc, win, y, off(g.b, k.n, k.c, k.p, k.q));
  }
}

// Output positions o whose window [o*s - p, o*s - p + k) holds input position x, clipped to [0, out).
__device__ __forceinline__ int64_t windowsLo(int64_t x, int64_t k, int64_t s, int64_t p) {
  const int64_t e = x + p - k + 1;  // o*s >= e
  return e <= 0 ? 0 : (e + s - 1) / s;
}
__device__ __forceinline__ int64_t windowsHi(int64_t x, int64_t s, int64_t p, int64_t out) {
  const int64_t o = (x + p) / s;  // x + p >= 0
  return o < out - 1 ? o : out - 1;
}

// One thread per input element: a = gradOut strides, b = index strides, c = gradIn strides.
template <typename T>
__global__ void maxBackwardKernel(Geo g, const T* gy, const int32_t* idx, T* gx) {
  using A = typename cu::Acc<T>::type;
  MT_CU_LOOP(i, g.N * g.C * g.H * g.W) {
    const Coord k = coordOf(i, g.C, g.H, g.W, g.cl);
    const int64_t n = k.n, c = k.c, h = k.p, w = k.q;
    const int32_t pos = int32_t(h * g.W + w);
    const int64_t ohLo = windowsLo(h, g.kh, g.sh, g.ph), ohHi = windowsHi(h, g.sh, g.ph, g.OH);
    const int64_t owLo = windowsLo(w, g.kw, g.sw, g.pw), owHi = windowsHi(w, g.sw, g.pw, g.OW);
    T acc;
    cu::st(&acc, A(0));
    for (int64_t oh = ohLo; oh <= ohHi; oh++)
      for (int64_t ow = owLo; ow <= owHi; ow++)
        if (idx[off(g.b, n, c, oh, ow)] == pos) cu::st(&acc, cu::ld(&acc) + cu::ld(gy + off(g.a, n, c, oh, ow)));
    gx[off(g.c, n, c, h, w)] = acc;
  }
}

// gradIn[n, c, h, w] = Σ over the bins covering (h, w), in output order, of gradOut / bin size,
// rounded to T after each addition as the CPU's accumulation in place is.
template <typename T>
__global__ void avgBackwardKernel(Geo g, const T* gy, T* gx) {
  using A = typename cu::Acc<T>::type;
  MT_CU_LOOP(i, g.N * g.C * g.H * g.W) {
    const Coord k = coordOf(i, g.C, g.H, g.W, g.cl);
    const int64_t n = k.n, c = k.c, h = k.p, w = k.q;
    // Bins containing h: floor(h*OH/H) <= oh <= floor(((h+1)*OH - 1)/H), checked again below.
    const int64_t ohLo = h * g.OH / g.H, ohHi = ((h + 1) * g.OH - 1) / g.H;
    const int64_t owLo = w * g.OW / g.W, owHi = ((w + 1) * g.OW - 1) / g.W;
    T acc;
    cu::st(&acc, A(0));
    for (int64_t oh = ohLo; oh <= ohHi && oh < g.OH; oh++) {
      const int64_t hLo = binLo(oh, g.H, g.OH), hHi = binHi(oh, g.H, g.OH);
      if (h < hLo || h >= hHi) continue;
      for (int64_t ow = owLo; ow <= owHi && ow < g.OW; ow++) {
        const int64_t wLo = binLo(ow, g.W, g.OW), wHi = binHi(ow, g.W, g.OW);
        if (w < wLo || w >= wHi) continue;
        const A inv = A(1) / A((hHi - hLo) * (wHi - wLo));
        cu::st(&acc, cu::ld(&acc) + cu::ld(gy + off(g.a, n, c, oh, ow)) * inv);
      }
    }
    gx[off(g.b, n, c, h, w)] = acc;
  }
}

void checkShape(const char* op, const CudaPoolShape& s) {
  if (s.N < 0 || s.C < 0 || s.H <= 0 || s.W <= 0 || s.OH <= 0 || s.OW <= 0) cu::fail(std::string(op) + ": bad sizes");
  if (s.H * s.W > 0x7fffffff) cu::fail(std::string(op) + ": planes over 2^31 elements are not supported");
}

// Checks the shape, then (unless there is nothing to do) launch(stream, blocks) on dev's compute
// stream, one thread per input element (backward: `overInput`) or per output element.
template <typename Launch>
void launchPool(const char* op, int dev, const CudaPoolShape& s, bool overInput, Launch launch) {
  checkShape(op, s);
  const int64_t n = overInput ? s.N * s.C * s.H * s.W : s.N * s.C * s.OH * s.OW;
  if (n == 0) return;
  cudaUseDevice(dev);
  launch(computeStream(dev), cu::blocksFor(n));
  cu::checkLaunch(op);
}

}  // namespace

void cudaMaxPoolForward(int dev, int dtype, const CudaPoolShape& s, const void* x, const int64_t* xs, void* y,
                        const int64_t* ys, int32_t* idx) {
  launchPool("maxPool2dForward", dev, s, false, [&](cudaStream_t st, unsigned blocks) {
    const Geo g = geoOf(s, ys, xs, ys);
    MT_CU_FLOAT(dtype, "maxPool2dForward", {
      auto k = forwardKernel<T, MaxReduce<T>>;
      MT_LAUNCH(k, blocks, cu::kThreads, 0, st, g, static_cast<const T*>(x), static_cast<T*>(y), MaxReduce<T>{idx});
    });
  });
}

void cudaMaxPoolBackward(int dev, int dtype, const CudaPoolShape& s, const void* gy, const int64_t* gys,
                         const int32_t* idx, const int64_t* is, void* gx, const int64_t* gxs) {
  launchPool("maxPool2dBackward", dev, s, true, [&](cudaStream_t st, unsigned blocks) {
    if (s.sh <= 0 || s.sw <= 0) cu::fail("maxPool2dBackward: strides must be positive");
    const Geo g = geoOf(s, gxs, gys, is, gxs);
    MT_CU_FLOAT(dtype, "maxPool2dBackward", {
      auto k = maxBackwardKernel<T>;
      MT_LAUNCH(k, blocks, cu::kThreads, 0, st, g, static_cast<const T*>(gy), idx, static_cast<T*>(gx));
    });
  });
}

void cudaAdaptiveAvgPoolForward(int dev, int dtype, const CudaPoolShape& s, const void* x, const int64_t* xs, void* y,
                                const int64_t* ys) {
  launchPool("adaptiveAvgPool2dForward", dev, s, false, [&](cudaStream_t st, unsigned blocks) {
    const Geo g = geoOf(s, ys, xs, ys);
    MT_CU_FLOAT(dtype, "adaptiveAvgPool2dForward", {
      auto k = forwardKernel<T, AvgReduce<T>>;
      MT_LAUNCH(k, blocks, cu::kThreads, 0, st, g, static_cast<const T*>(x), static_cast<T*>(y), AvgReduce<T>{xs[1] == 1});
    });
  });
}

void cudaAdaptiveAvgPoolBackward(int dev, int dtype, const CudaPoolShape& s, const void* gy, const int64_t* gys, void* gx,
                                 const int64_t* gxs) {
  launchPool("adaptiveAvgPool2dBackward", dev, s, true, [&](cudaStream_t st, unsigned blocks) {
    const Geo g = geoOf(s, gxs, gys, gxs);
    MT_CU_FLOAT(dtype, "adaptiveAvgPool2dBackward", {
      auto k = avgBackwardKernel<T>;
      MT_LAUNCH(k, blocks, cu::kThreads, 0, st, g, static_cast<const T*>(gy), static_cast<T*>(gx));
    });
  });
}

}  // namespace mt
