// Launchers of the CUDA batch norm (batchnorm.cu) and pooling (pool.cu) kernels: the arguments
// of the CPU kernels (native/cpu/batchnorm.cc, pool.cc, the references), device pointers
// resolved by bindings_image.cc. Plain declarations, no CUDA types; CUDA builds only. Statistics,
// weight and bias are f64 for f64 activations and f32 otherwise. Every reduction runs in a fixed
// order (no atomics), so repeated runs are bit-identical.
#pragma once
#include <cstdint>
#include <functional>

namespace mt {

// Device scratch of at least `bytes` bytes, valid for the work queued on the compute stream by
// the call it is passed to (bindings_image.cc: storages tagged 'other' from the caching allocator).
using CudaBnScratch = std::function<void*(int64_t bytes)>;

// ResNet's ReLU fused into batch norm (kernelsSay 'batchNormRelu'): with `relu`, the forward
// writes relu(bn(x)), or relu(bn(x) + residual) with residual dense in x's layout and dtype,
// rounding bn(x) and the sum to x's dtype as the separate ops do.
struct CudaBnRelu {
  bool relu = false;
  const void* residual = nullptr;
};
// Its backward: with y (the fused forward's output) gy is masked where y is not positive in both
// passes; gResidual (may be null) gets the masked gy, the residual's gradient.
struct CudaBnReluGrad {
  const void* y = nullptr;
  void* gResidual = nullptr;
};

// x, y dense [outer, C, inner]. Writes y, mean and invstd (of the batch when training, of the
// running statistics otherwise) and updates runMean/runVar in place when training (unbiased
// variance, as PyTorch). weight, bias, runMean, runVar may be null (not when evaluating).
// weight and bias are of dtype code affineDtype: the statistics' dtype or, for bf16/f16 x, x's
// own (read without a cast copy). Training adds 1 to *counter (an i64, may be null) in the
// statistics launch: PyTorch's num_batches_tracked without launches of its own.
void cudaBatchNormForward(int dev, int dtype, const void* x, void* y, int64_t outer, int64_t C, int64_t inner,
                          const void* weight, const void* bias, void* mean, void* invstd, void* runMean, void* runVar,
                          bool training, double momentum, double eps, const CudaBnScratch& scratch, int affineDtype,
                          int64_t* counter, const CudaBnRelu& relu = {});
// Writes (never accumulates) whichever of gx, gw, gb is not null; weight, gw and gb are of dtype
// code affineDtype (as the forward's), the gradients rounded to the statistics' dtype first, so
// 16-bit ones equal an f32 gradient cast afterwards bit for bit.
void cudaBatchNormBackward(int dev, int dtype, const void* gy, const void* x, const void* mean, const void* invstd,
                           const void* weight, void* gx, void* gw, void* gb, int64_t outer, int64_t C, int64_t inner,
                           bool training, const CudaBnScratch& scratch, int affineDtype,
                           const CudaBnReluGrad& relu = {});

// Pooling geometry; strides are element strides of the logical [N, C, H, W] (or [N, C, OH, OW]).
struct CudaPoolShape {
  int64_t N, C, H, W, OH, OW;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
};
// Max over windows (padding reads as -inf, NaN wins); idx (i32, y's strides) gets h * W + w.
void cudaMaxPoolForward(int dev, int dtype, const CudaPoolShape& s, const void* x, const int64_t* xs, void* y,
                        const int64_t* ys, int32_t* idx);
// gradIn = 0, then each output gradient added at its argmax, plane by plane in output order.
void cudaMaxPoolBackward(int dev, int dtype, const CudaPoolShape& s, const void* gy, const int64_t* gys,
                         const int32_t* idx, const int64_t* is, void* gx, const int64_t* gxs);
// PyTorch's adaptive bins [floor(i*H/OH), ceil((i+1)*H/OH)).
void cudaAdaptiveAvgPoolForward(int dev, int dtype, const CudaPoolShape& s, const void* x, const int64_t* xs, void* y,
                                const int64_t* ys);
void cudaAdaptiveAvgPoolBackward(int dev, int dtype, const CudaPoolShape& s, const void* gy, const int64_t* gys, void* gx,
                                 const int64_t* gxs);

}  // namespace mt
