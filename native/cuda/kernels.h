// Launchers of the CUDA kernels, one .cu file per family. Plain declarations (no CUDA types):
// the N-API bindings (bindings_*.cc) resolve storages to device pointers and call these. Every
// launcher queues on the device's compute stream; `dev` is the CUDA ordinal. Dtypes are the
// codes of native/tensor/dtype.h; op codes are those of the CPU kernels.
#pragma once
#include <cstdint>

namespace mt {

// copy.cu
void cudaCopyStrided(int dev, int srcDtype, const void* src, const int64_t* srcStrides, int dstDtype, void* dst,
                     const int64_t* dstStrides, const int64_t* shape, int nd);
void cudaFill(int dev, int dtype, void* p, int64_t n, double value);

// elementwise.cu
void cudaBinary(int dev, int op, int dtype, const void* a, const int64_t* aStrides, const void* b,
                const int64_t* bStrides, void* out, const int64_t* shape, int nd);
void cudaBinaryFlat(int dev, int op, int dtype, const void* a, const void* b, void* out, int64_t n);
// scalarPtr (optional): the scalar is that device f64 instead of `scalar` (see unaryFlat).
void cudaUnary(int dev, int op, int dtype, const void* x, void* out, int64_t n, double scalar, const double* scalarPtr = nullptr);
void cudaAxpy(int dev, int dtype, const void* x, void* y, int64_t n, double alpha);

// reduce.cu
// Few outputs over a long axis (a bias gradient: inner columns, thousands of rows) split the axis
// into fixed chunks summed in chunk order: `scratch` is cudaReduceScratch(...) doubles (0: none).
int64_t cudaReduceScratch(int64_t outer, int64_t r, int64_t inner);
void cudaReduce(int dev, int op, int dtype, const void* x, void* out, int64_t outer, int64_t r, int64_t inner,
                double scale, double* scratch);

// softmax.cu
void cudaSoftmaxForward(int dev, int dtype, const void* x, void* y, int64_t rows, int64_t cols, bool logOut,
                        int64_t causalRows, double scale);
void cudaSoftmaxBackward(int dev, int dtype, const void* y, const void* g, void* dx, int64_t rows, int64_t cols,
                         bool logOut, int64_t causalRows, double scale);

// optim.cu (stateDtype f32 or f64; master and buf may be null)
struct CudaSgdHyper {
  double lr, momentum, dampening, weightDecay;
  bool nesterov, maximize, firstStep;
  double gradScale;  // multiplies the gradient in the state dtype (mixed precision's unscale and clip)
};
struct CudaAdamHyper {
  double lr, beta1, beta2, eps, weightDecay;
  int64_t step;
  bool decoupled, maximize;
  double gradScale;  // multiplies the gradient in the state dtype (mixed precision's unscale and clip)
};
void cudaSgdStep(int dev, int pDtype, void* param, int gDtype, const void* grad, int sDtype, void* buf, void* master,
                 int64_t n, const CudaSgdHyper& h);
void cudaAdamStep(int dev, int pDtype, void* param, int gDtype, const void* grad, int sDtype, void* m, void* v,
                  void* master, int64_t n, const CudaAdamHyper& h);
// sum |x|^p (p = inf: max |x|) in double, per fixed chunk, combined in chunk order on the host:
// deterministic, and NaN propagates (the loss scaler's overflow check).
// `partial` is device scratch of cudaNormPowScratch(n) doubles.
int64_t cudaNormPowScratch(int64_t n);
double cudaNormPow(int dev, int dtype, const void* x, int64_t n, double p, double* partial);
// grad_norm.cu: the same sum (or max) added into *acc (one f64 on the device) without reading
// it; `partial` is scratch as above (unused, may be null, when n <= 4096: one launch).
void cudaNormPowInto(int dev, int dtype, const void* x, int64_t n, double p, double* acc, double* partial);
// clip_coef.cu: slot[0] (Σ|g|^p, or max |g|) becomes the total norm, slot[1] the clipping
// coefficient (tensor/clip_coef.h); one thread, nothing read back.
void cudaClipCoefficient(int dev, double* slot, bool squares, double maxNorm);
// step_decision.cu: out[0..2] = skip, gradScale, norm from the sums *global and *local
// (tensor/step_decision.h); one thread, nothing read back.
// unscalePtr (one f64 on dev, may be null): read when the kernel runs, in place of unscale.
void cudaStepDecision(int dev, const double* global, const double* local, double unscale, const double* unscalePtr,
                      double maxNorm, bool check, double* out);
// loss_scaler.cu: one DynamicLossScaler.update of the f64 state[0..8) from the skip *decision
// (tensor/loss_scaler_rule.h); one thread, nothing read back.
struct LossScalerOptions;
void cudaLossScalerUpdate(int dev, double* state, const double* decision, const LossScalerOptions& opts);

// bias.cu: out[r, j] (+)= bias[j] over rows of a contiguous [rows, n] output (matmul's epilogue).
void cudaAddBias(int dev, int outDtype, void* out, int biasDtype, const void* bias, int64_t rows, int64_t n,
                 bool accumulate, bool biasOnly, int64_t ld = 0);  // ld > n: out's rows are ld elements apart

}  // namespace mt

namespace mt {

// layernorm.cu: mean/rstd are f64 for f64 tensors, f32 otherwise; w, b, dx, dw, db may be null.
void cudaLayerNormForward(int dev, int dtype, const void* x, const void* w, const void* b, void* y, void* mean,
                          void* rstd, int64_t rows, int64_t cols, double eps);
// dw/db are column sums over rows, from partial sums over fixed row blocks added in a fixed order:
// `scratch` is cudaLayerNormScratchBytes(dtype, rows, cols) bytes; addW / addB add them to what
// dw / db hold (a parameter's .grad); addX adds dx to what dx holds (a gradient summed into the
// one held), rounded once.
int64_t cudaLayerNormScratchBytes(int dtype, int64_t rows, int64_t cols);
void cudaLayerNormBackward(int dev, int dtype, const void* x, const void* w, const void* mean, const void* rstd,
                           const void* g, void* dx, void* dw, void* db, int64_t rows, int64_t cols, void* scratch,
                           bool addW = false, bool addB = false, bool addX = false);

// embedding.cu: the backward sums the rows of g in position order per id: `order` lists positions
// grouped by id, `start` (V + 1 entries) delimits them; `add`: added to what dw holds (a .grad).
void cudaEmbeddingBackward(int dev, int dtype, const int64_t* order, const int64_t* start, const void* g, int64_t V,
                           int64_t D, void* dw, bool add = false);

// loss.cu: cross-entropy of [rows, C] logits; lse is f64 for f64 logits, f32 otherwise; targets
// already range-checked; g is read at r * gStride (0: one scalar). xLd / dxLd (0: C): the row
// pitch of x and dx in elements (a padded matmul output); dx's padding is not written.
void cudaCrossEntropyForward(int dev, int dtype, const void* x, int64_t rows, int64_t C, int idDtype, const void* t,
                             int64_t ignore, void* loss, void* lse, int64_t xLd = 0);
void cudaCrossEntropyBackward(int dev, int dtype, const void* x, int64_t rows, int64_t C, int idDtype, const void* t,
                              int64_t ignore, const void* lse, const void* g, int64_t gStride, double scale, void* dx,
                              int64_t xLd = 0, int64_t dxLd = 0);

}  // namespace mt

namespace mt {
// random.cu: kind 0 uniform in [a, b), kind 2 dropout mask (0 with probability a, else 1/(1-a)),
// element i from Philox counter first + i: the CPU's values exactly. With `base` (a CUDA graph's
// random op) the seed is base[0] and the counter base[1] + first, read when the kernel runs.
void cudaRandomUniform(int dev, int kind, int dtype, void* p, int64_t n, uint64_t seed, uint64_t first,
                       const uint64_t* base, double a, double b);
// Queues base[0] = seed, base[1] = offset on the compute stream (before each replay of a graph with random ops).
void cudaRandomSetBase(int dev, uint64_t* base, uint64_t seed, uint64_t offset);
}  // namespace mt
