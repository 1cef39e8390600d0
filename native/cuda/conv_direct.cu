// Direct conv2d kernels: one thread per output element (forward: y, backward-data: gradIn,
// backward-weights: gradW), each summing its taps in the order of the CPU's plain loops
// (native/cpu/reference.h, the reference), so f64 results match it and repeated runs are
// bit-identical. Plus the bias epilogue and the bias gradient (a block per channel, fixed tree).
#include "cuda/common.cuh"
#include "cuda/conv.h"
#include "cuda/runtime.h"
#include "util/check.h"

namespace mt {
namespace {

struct Geo {
  int64_t N, C, H, W, O, kh, kw, sh, sw, ph, pw, dh, dw, G, OH, OW;
  int64_t a[4], b[4];  // element strides of the pass's two activations
};

// y[n, o, oh, ow] = Σ_c Σ_i Σ_j x[n, g·cg + c, oh·sh − ph + i·dh, ow·sw − pw + j·dw] · w[o, c, i, j]
template <typename T>
__global__ void forwardKernel(Geo g, const T* x, const T* w, T* y) {
  using A = typename cu::Acc<T>::type;
  const int64_t cg = g.C / g.G, og = g.O / g.G;
  MT_CU_LOOP(i, g.N * g.O * g.OH * g.OW) {
    const int64_t ow = i % g.OW, oh = (i / g.OW) % g.OH, o = (i / (g.OW * g.OH)) % g.O, n = i / (g.OW * g.OH * g.O);
    const int64_t c0 = (o / og) * cg;
    A acc = A(0);
    for (int64_t c = 0; c < cg; c++)
      for (int64_t ki = 0; ki < g.kh; ki++) {
        const int64_t h = oh * g.sh - g.ph + ki * g.dh;
        if (h < 0 || h >= g.H) continue;
        for (int64_t kj = 0; kj < g.kw; kj++) {
          const int64_t ww = ow * g.sw - g.pw + kj * g.dw;
          if (ww < 0 || ww >= g.W) continue;
          acc += cu::ld(x + n * g.a[0] + (c0 + c) * g.a[1] + h * g.a[2] + ww * g.a[3]) *
                 cu::ld(w + ((o * cg + c) * g.kh + ki) * g.kw + kj);
        }
      }
    cu::st(y + n * g.b[0] + o * g.b[1] + oh * g.b[2] + ow * g.b[3], acc);
  }
}

// gradIn[n, c, h, w] = Σ over the outputs that read (h, w) of gradOut · w.
template <typename T>
__global__ void backwardDataKernel(Geo g, const T* gy, const T* w, T* gx) {
  using A = typename cu::Acc<T>::type;
  const int64_t cg = g.C / g.G, og = g.O / g.G;
  MT_CU_LOOP(i, g.N * g.C * g.H * g.W) {
    const int64_t x = i % g.W, h = (i / g.W) % g.H, c = (i / (g.W * g.H)) % g.C, n = i / (g.W * g.H * g.C);
    const int64_t o0 = (c / cg) * og, cl = c % cg;
    A acc = A(0);
    for (int64_t ki = 0; ki < g.kh; ki++) {
      const int64_t t = h + g.ph - ki * g.dh;
      if (t < 0 || t % g.sh) continue;
      const int64_t oh = t / g.sh;
      if (oh >= g.OH) continue;
      for (int64_t kj = 0; kj < g.kw; kj++) {
        const int64_t u = x + g.pw - kj * g.dw;
        if (u < 0 || u % g.sw) continue;
        const int64_t ow = u / g.sw;
        if (ow >= g.OW) continue;
        for (int64_t o = o0; o < o0 + og; o++)
          acc += cu::ld(gy + n * g.a[0] + o * g.a[1] + oh * g.a[2] + ow * g.a[3]) *
                 cu::ld(w + ((o * cg + cl) * g.kh + ki) * g.kw + kj);
      }
    }
    cu::st(gx + n * g.b[0] + c * g.b[1] + h * g.b[2] + x * g.b[3], acc);
  }
}

// gradW[o, c, i, j] = Σ_n Σ_oh Σ_ow gradOut[n, o, oh, ow] · x[n, g·cg + c, oh·sh − ph + i·dh, ...]
template <typename T>
__global__ void backwardWeightsKernel(Geo g, const T* x, const T* gy, T* gw) {
  using A = typename cu::Acc<T>::type;
  const int64_t cg = g.C / g.G, og = g.O / g.G;
  MT_CU_LOOP(i, g.O * cg * g.kh * g.kw) {
    const int64_t kj = i % g.kw, ki = (i / g.kw) % g.kh, cl = (i / (g.kw * g.kh)) % cg, o = i / (g.kw * g.kh * cg);
    const int64_t c = (o / og) * cg + cl;
    A acc = A(0);
    for (int64_t n = 0; n < g.N; n++)
      for (int64_t oh = 0; oh < g.OH; oh++) {
        const int64_t h = oh * g.sh - g.ph + ki * g.dh;
        if (h < 0 || h >= g.H) continue;
        for (int64_t ow = 0; ow < g.OW; ow++) {
          const int64_t ww = ow * g.sw - g.pw + kj * g.dw;
          if (ww < 0 || ww >= g.W) continue;
          acc += cu::ld(gy + n * g.b[0] + o * g.b[1] + oh * g.b[2] + ow * g.b[3]) *
                 cu::ld(x + n * g.a[0] + c * g.a[1] + h * g.a[2] + ww * g.a[3]);
        }
      }
    cu::st(gw + i, acc);
  }
}

template <typename T, typename B>
__global__ void addBiasKernel(T* y, int64_t s0, int64_t s1, int64_t s2, int64_t s3, int64_t O, int64_t OH, int64_t OW,
                              int64_t total, const B* bias) {
  MT_CU_LOOP(i, total) {
    const int64_t ow = i % OW, oh = (i / OW) % OH, o = (i / (OW * OH)) % O, n = i / (OW * OH * O);
    T* p = y + n * s0 + o * s1 + oh * s2 + ow * s3;
    cu::st(p, double(cu::ld(p)) + double(bias[o]));
  }
}

// One block per channel: thread t sums elements t, t + kThreads, ... in double, then a fixed tree.
template <typename T, typename B>
__global__ void biasGradKernel(const T* gy, int64_t s0, int64_t s1, int64_t s2, int64_t s3, int64_t OH, int64_t OW,
                               int64_t per, B* gb) {
  __shared__ double buf[cu::kThreads];
  const int64_t o = blockIdx.x;
  double acc = 0;
  for (int64_t i = threadIdx.x; i < per; i += cu::kThreads) {
    const int64_t ow = i % OW, oh = (i / OW) % OH, n = i / (OW * OH);
    acc += double(cu::ld(gy + n * s0 + o * s1 + oh * s2 + ow * s3));
  }
  const double total = cu::blockReduce<false>(acc, buf);
  if (threadIdx.x == 0) gb[o] = B(total);
}

}  // namespace

std::string CudaConvShape::describe() const {
  return cat("N ", N, " C ", C, " H ", H, " W ", W, " O ", O, " kernel ", kh, "x", kw, " stride ", sh, "x", sw, " pad ",
             ph, "x", pw, " dilation ", dh, "x", dw, " groups ", groups);
}

void cudaConvDirect(int dev, CudaConvProp prop, int dtype, const CudaConvShape& s, const void* a,
                    const int64_t* aStrides, void* w, void* b, const int64_t* bStrides) {
  MT_CHECK(s.groups > 0 && s.C % s.groups == 0 && s.O % s.groups == 0, "conv2d: groups ", s.groups, " must divide C ",
           s.C, " and O ", s.O);
  Geo g{s.N, s.C, s.H, s.W, s.O, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw, s.groups, s.OH(), s.OW(), {}, {}};
  for (int k = 0; k < 4; k++) g.a[k] = aStrides[k], g.b[k] = bStrides[k];
  const int64_t outputs = prop == kConvForward        ? s.N * s.O * g.OH * g.OW
                          : prop == kConvBackwardData ? s.N * s.C * s.H * s.W
                                                      : s.O * (s.C / s.groups) * s.kh * s.kw;
  if (outputs == 0) return;
  cudaUseDevice(dev);
  cudaStream_t st = computeStream(dev);
  const unsigned blocks = cu::blocksFor(outputs);
  MT_CU_FLOAT(dtype, "conv2d", {
    if (prop == kConvForward) {
      auto k = forwardKernel<T>;
      MT_LAUNCH(k, blocks, cu::kThreads, 0, st, g, static_cast<const T*>(a), static_cast<const T*>(w), static_cast<T*>(b));
    } else if (prop == kConvBackwardData) {
      auto k = backwardDataKernel<T>;
      MT_LAUNCH(k, blocks, cu::kThreads, 0, st, g, static_cast<const T*>(a), static_cast<const T*>(w), static_cast<T*>(b));
    } else {
      auto k = backwardWeightsKernel<T>;
      MT_LAUNCH(k, blocks, cu::kThreads, 0, st, g, static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(w));
    }
  });
  cu::checkLaunch(prop == kConvForward ? "conv2dForward (direct)" : prop == kConvBackwardData ? "conv2dBackwardData (direct)"
                                                                                             : "conv2dBackwardWeights (direct)");
}

void cudaConvAddBias(int dev, int dtype, void* y, const int64_t* ys, int64_t N, int64_t O, int64_t OH, int64_t OW,
                     int biasDtype, const void* bias) {
  const int64_t total = N * O * OH * OW;
  if (total == 0) return;
  cudaUseDevice(dev);
  cudaStream_t st = computeStream(dev);
  MT_CU_FLOAT(dtype, "conv2d bias", {
    if (biasDtype == cu::F64) {
      auto k = addBiasKernel<T, double>;
      MT_LAUNCH(k, cu::blocksFor(total), cu::kThreads, 0, st, static_cast<T*>(y), ys[0], ys[1], ys[2], ys[3], O, OH, OW,
                total, static_cast<const double*>(bias));
    } else {
      auto k = addBiasKernel<T, float>;
      MT_LAUNCH(k, cu::blocksFor(total), cu::kThreads, 0, st, static_cast<T*>(y), ys[0], ys[1], ys[2], ys[3], O, OH, OW,
                total, static_cast<const float*>(bias));
    }
  });
  cu::checkLaunch("conv2d bias");
}

void cudaConvBiasGrad(int dev, int dtype, const void* gy, const int64_t* gs, int64_t N, int64_t O, int64_t OH,
                      int64_t OW, int biasDtype, void* gb) {
  if (O == 0) return;
  MT_CHECK(O <= 0x7fffffff, "conv2d bias gradient: more than 2^31 channels");
  cudaUseDevice(dev);
  cudaStream_t st = computeStream(dev);
  const int64_t per = N * OH * OW;
  MT_CU_FLOAT(dtype, "conv2d bias gradient", {
    if (biasDtype == cu::F64) {
      auto k = biasGradKernel<T, double>;
      MT_LAUNCH(k, unsigned(O), cu::kThreads, 0, st, static_cast<const T*>(gy), gs[0], gs[1], gs[2], gs[3], OH, OW, per,
                static_cast<double*>(gb));
    } else {
      auto k = biasGradKernel<T, float>;
      MT_LAUNCH(k, unsigned(O), cu::kThreads, 0, st, static_cast<const T*>(gy), gs[0], gs[1], gs[2], gs[3], OH, OW, per,
                static_cast<float*>(gb));
    }
  });
  cu::checkLaunch("conv2d bias gradient");
}

}  // namespace mt
