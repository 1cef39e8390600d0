// Conv2d on CUDA: cuDNN's legacy convolution API (conv_cudnn.cc) for f32/bf16/f16, and direct
// kernels (conv_direct.cu: one thread per output element, fixed summation order) for f64 — the
// CPU's plain-loop path — and wherever cuDNN has no acceptable algorithm. Plain declarations, no
// CUDA types; CUDA builds only. Activations are logical [N, C, H, W] with element strides (NCHW
// or channels-last); weights are contiguous [O, C / groups, kh, kw]; dtype codes as
// native/tensor/dtype.h. Everything queues on the device's compute stream.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace mt {

struct CudaConvShape {
  int64_t N, C, H, W, O, kh, kw, sh, sw, ph, pw;
  int64_t dh = 1, dw = 1, groups = 1;
  int64_t OH() const { return (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1; }
  int64_t OW() const { return (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1; }
  std::string describe() const;  // "N 8 C 64 H 32 W 32 O 64 kernel 3x3 stride 1x1 pad 1x1 ..."
};

enum CudaConvProp { kConvForward = 0, kConvBackwardData = 1, kConvBackwardWeights = 2 };

// Device memory for a cuDNN workspace, valid until the call returns (the bindings hand out
// storages tagged 'other' from the caching allocator).
using CudaScratch = std::function<void*(int64_t bytes)>;

// One cuDNN convolution. a/b are the two activations of the pass, as for the CPU:
// forward (x, y), backward-data (gradOut, gradIn), backward-weights (x, gradOut); w is the
// weights (read) or the weight gradient (written). Writes, never accumulates. Returns false,
// having queued nothing, when cuDNN offers no algorithm meshtrain accepts (f32 without TF32,
// deterministic preferred) or the layout is neither dense NCHW nor channels-last; throws naming
// the call on a cuDNN error and "missing libcudnn ..." when the library is absent. filterNhwc: w
// is laid out [O, kh, kw, C / groups] instead (what cuDNN's NHWC kernels read: no copy for them).
bool cudnnConv(int dev, CudaConvProp prop, int dtype, const CudaConvShape& s, const void* a, const int64_t* aStrides,
               void* w, void* b, const int64_t* bStrides, const CudaScratch& scratch, bool filterNhwc = false);

// The same three passes as direct kernels (any strides, any float dtype; f32 accumulation for
// 16-bit dtypes). Write, never accumulate.
void cudaConvDirect(int dev, CudaConvProp prop, int dtype, const CudaConvShape& s, const void* a,
                    const int64_t* aStrides, void* w, void* b, const int64_t* bStrides);

// y[n, o, :, :] += bias[o] (bias f32, or f64 for f64 outputs).
void cudaConvAddBias(int dev, int dtype, void* y, const int64_t* yStrides, int64_t N, int64_t O, int64_t OH,
                     int64_t OW, int biasDtype, const void* bias);
// gb[o] = Σ gradOut[n, o, :, :], one block per channel summed in a fixed order (deterministic).
void cudaConvBiasGrad(int dev, int dtype, const void* gy, const int64_t* gyStrides, int64_t N, int64_t O, int64_t OH,
                      int64_t OW, int biasDtype, void* gb);

}  // namespace mt
