// Plain loops for matmul and conv2d: the f64 path (oneDNN has no f64) used by gradient checks,
// and the reference the oneDNN paths are tested against. Same semantics as the oneDNN kernels.
#pragma once
#include <algorithm>
#include <cstdint>

namespace mt {
namespace ref {

// Below this many multiply-adds a loop runs on one thread: a parallel region costs microseconds
// when idle and a whole scheduler slice when a core is busy elsewhere.
constexpr int64_t kParallelWork = 1 << 17;

// out[b] (contiguous [batch, M, N]) = A[b] @ B[b] (+ bias[N]) (+ out when accumulate).
// as/bs are element strides {batch, row, col}; a batch stride of 0 broadcasts.
// Blocks of 4 rows × 256 columns reuse each loaded row of B four times.
template <typename T>
void matmul(const T* a, const int64_t* as, const T* b, const int64_t* bs, const T* bias, T* out,
            int64_t batch, int64_t M, int64_t N, int64_t K, bool accumulate) {
  constexpr int64_t kRows = 4, kCols = 256;
  const int64_t rowBlocks = (M + kRows - 1) / kRows, tasks = batch * rowBlocks;
#pragma omp parallel for schedule(dynamic) if (tasks > 1 && batch * M * N * K > kParallelWork)
  for (int64_t t = 0; t < tasks; t++) {
    const int64_t bi = t / rowBlocks, i0 = (t % rowBlocks) * kRows;
    const int64_t rows = std::min(kRows, M - i0);
    const T* pa = a + bi * as[0] + i0 * as[1];
    const T* pb = b + bi * bs[0];
    T* po = out + (bi * M + i0) * N;
    T acc[kRows][kCols];
    for (int64_t j0 = 0; j0 < N; j0 += kCols) {
      const int64_t cols = std::min(kCols, N - j0);
      for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) acc[r][j] = T(0);
      for (int64_t k = 0; k < K; k++) {
        const T* brow = pb + k * bs[1] + j0 * bs[2];
        for (int64_t r = 0; r < rows; r++) {
          const T av = pa[r * as[1] + k * as[2]];
          if (bs[2] == 1) {
            for (int64_t j = 0; j < cols; j++) acc[r][j] += av * brow[j];
          } else {
            for (int64_t j = 0; j < cols; j++) acc[r][j] += av * brow[j * bs[2]];
          }
        }
      }
      for (int64_t r = 0; r < rows; r++) {
        T* o = po + r * N + j0;
        for (int64_t j = 0; j < cols; j++) {
          T v = acc[r][j];
          if (bias) v += bias[j0 + j];
          if (accumulate) v += o[j];
          o[j] = v;
        }
      }
    }
  }
}

// Conv2d geometry, PyTorch's: dilation dh/dw spaces the kernel taps, groups G split C and O into
// G independent convolutions. Activation strides are element strides of the logical [N, C, H, W]
// (or [N, O, OH, OW]) dims; weights are contiguous [O, C / G, kh, kw].
struct ConvShape {
  int64_t N, C, H, W, O, kh, kw, sh, sw, ph, pw;
  int64_t dh = 1, dw = 1, G = 1;
  int64_t OH() const { return (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1; }
  int64_t OW() const { return (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1; }
  int64_t macs() const { return N * O * OH() * OW() * (C / G) * kh * kw; }
};

template <typename T>
void convForward(const ConvShape& s, const T* x, const int64_t* xs, const T* w, const T* bias,
                 T* y, const int64_t* ys) {
  const int64_t OH = s.OH(), OW = s.OW(), cg = s.C / s.G, og = s.O / s.G;
#pragma omp parallel for schedule(dynamic) if (s.macs() > kParallelWork)
  for (int64_t no = 0; no < s.N * s.O; no++) {
    const int64_t n = no / s.O, o = no % s.O, c0 = (o / og) * cg;
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        T acc = bias ? bias[o] : T(0);
        for (int64_t c = 0; c < cg; c++)
          for (int64_t i = 0; i < s.kh; i++) {
            const int64_t h = oh * s.sh - s.ph + i * s.dh;
            if (h < 0 || h >= s.H) continue;
            for (int64_t j = 0; j < s.kw; j++) {
              const int64_t ww = ow * s.sw - s.pw + j * s.dw;
              if (ww < 0 || ww >= s.W) continue;
              acc += x[n * xs[0] + (c0 + c) * xs[1] + h * xs[2] + ww * xs[3]] *
                     w[((o * cg + c) * s.kh + i) * s.kw + j];
            }
          }
        y[n * ys[0] + o * ys[1] + oh * ys[2] + ow * ys[3]] = acc;
      }
  }
}

// gradIn[n,c,h,w] = Σ gradOut[n,o,oh,ow] · w[o,c % cg,i,j] over the outputs of c's group that read (h, w).
template <typename T>
void convBackwardData(const ConvShape& s, const T* gy, const int64_t* gys, const T* w, T* gx,
                      const int64_t* gxs) {
  const int64_t OH = s.OH(), OW = s.OW(), cg = s.C / s.G, og = s.O / s.G;
#pragma omp parallel for schedule(dynamic) if (s.macs() > kParallelWork)
  for (int64_t nc = 0; nc < s.N * s.C; nc++) {
    const int64_t n = nc / s.C, c = nc % s.C, o0 = (c / cg) * og, cl = c % cg;
    for (int64_t h = 0; h < s.H; h++)
      for (int64_t ww = 0; ww < s.W; ww++) {
        T acc = T(0);
        for (int64_t i = 0; i < s.kh; i++) {
          const int64_t t = h + s.ph - i * s.dh;
          if (t < 0 || t % s.sh) continue;
          const int64_t oh = t / s.sh;
          if (oh >= OH) continue;
          for (int64_t j = 0; j < s.kw; j++) {
            const int64_t u = ww + s.pw - j * s.dw;
            if (u < 0 || u % s.sw) continue;
            const int64_t ow = u / s.sw;
            if (ow >= OW) continue;
            for (int64_t o = o0; o < o0 + og; o++)
              acc += gy[n * gys[0] + o * gys[1] + oh * gys[2] + ow * gys[3]] *
                     w[((o * cg + cl) * s.kh + i) * s.kw + j];
          }
        }
        gx[n * gxs[0] + c * gxs[1] + h * gxs[2] + ww * gxs[3]] = acc;
      }
  }
}

// gradW[o,c,i,j] = Σ gradOut[n,o,oh,ow] · x[n, g·cg + c, oh·sh-ph+i·dh, ow·sw-pw+j·dw]; gradBias[o] = Σ gradOut.
template <typename T>
void convBackwardWeights(const ConvShape& s, const T* x, const int64_t* xs, const T* gy,
                         const int64_t* gys, T* gw, T* gb) {
  const int64_t OH = s.OH(), OW = s.OW(), cg = s.C / s.G, og = s.O / s.G;
#pragma omp parallel for schedule(dynamic) if (s.macs() > kParallelWork)
  for (int64_t oc = 0; oc < s.O * cg; oc++) {
    const int64_t o = oc / cg, cl = oc % cg, c = (o / og) * cg + cl;
    for (int64_t i = 0; i < s.kh; i++)
      for (int64_t j = 0; j < s.kw; j++) {
        T acc = T(0);
        for (int64_t n = 0; n < s.N; n++)
          for (int64_t oh = 0; oh < OH; oh++) {
            const int64_t h = oh * s.sh - s.ph + i * s.dh;
            if (h < 0 || h >= s.H) continue;
            for (int64_t ow = 0; ow < OW; ow++) {
              const int64_t ww = ow * s.sw - s.pw + j * s.dw;
              if (ww < 0 || ww >= s.W) continue;
              acc += gy[n * gys[0] + o * gys[1] + oh * gys[2] + ow * gys[3]] *
                     x[n * xs[0] + c * xs[1] + h * xs[2] + ww * xs[3]];
            }
          }
        gw[((o * cg + cl) * s.kh + i) * s.kw + j] = acc;
      }
  }
  if (!gb) return;
#pragma omp parallel for schedule(static) if (s.N * s.O * OH * OW > kParallelWork)
  for (int64_t o = 0; o < s.O; o++) {
    T acc = T(0);
    for (int64_t n = 0; n < s.N; n++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) acc += gy[n * gys[0] + o * gys[1] + oh * gys[2] + ow * gys[3]];
    gb[o] = acc;
  }
}

}  // namespace ref
}  // namespace mt
