// Fused SGD and Adam/AdamW over one flat range (param, grad, states, optional fp32/f64 master),
// and the gradient-norm reduction. Formulas, hyperparameter scalars and the arithmetic type (the
// state dtype S) are native/cpu/optim.cc's, the reference.
#include <cmath>
#include <vector>
#include "cuda/adam_element.cuh"
#include "cuda/common.cuh"
#include "cuda/host_sync.h"
#include "cuda/kernels.h"
#include "cuda/norm_pow.cuh"
#include "cuda/runtime.h"
#include "cuda/sgd_element.cuh"

namespace mt {
namespace {

template <typename P, typename G, typename S>
__global__ void sgdKernel(P* param, S* master, const G* grad, S* buf, int64_t n, cu::SgdScalars<S> c) {
  MT_CU_LOOP(i, n) cu::sgdElement(param, master, grad, buf, i, c);
}

template <typename P, typename G, typename S>
__global__ void adamKernel(P* param, S* master, const G* grad, S* m, S* v, int64_t n, cu::AdamScalars<S> c) {
  MT_CU_LOOP(i, n) cu::adamElement(param, master, grad, m, v, i, c);
}

}  // namespace

// Binds P, G (any float dtype) and S (f32 or f64).
#define MT_CU_PGS(PD, GD, SD, OP, ...)                     \
  MT_CU_FLOAT(PD, OP, {                                    \
    using P = T;                                           \
    MT_CU_FLOAT(GD, OP, {                                  \
      using G = T;                                         \
      if (SD == cu::F32) {                                 \
        using S = float;                                   \
        __VA_ARGS__;                                       \
      } else if (SD == cu::F64) {                          \
        using S = double;                                  \
        __VA_ARGS__;                                       \
      } else {                                             \
        cu::fail(std::string(OP) + ": the state dtype must be f32 or f64"); \
      }                                                    \
    });                                                    \
  })

void cudaSgdStep(int dev, int pDtype, void* param, int gDtype, const void* grad, int sDtype, void* buf, void* master,
                 int64_t n, const CudaSgdHyper& h) {
  if (n == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_PGS(pDtype, gDtype, sDtype, "sgdStep", {
    const cu::SgdScalars<S> c = cu::sgdScalars<S>(h);
    auto sgd = sgdKernel<P, G, S>;
    MT_LAUNCH(sgd, cu::blocksFor(n), cu::kThreads, 0, s, static_cast<P*>(param), static_cast<S*>(master),
              static_cast<const G*>(grad), static_cast<S*>(buf), n, c);
  });
  cu::checkLaunch("sgdStep");
}

void cudaAdamStep(int dev, int pDtype, void* param, int gDtype, const void* grad, int sDtype, void* m, void* v,
                  void* master, int64_t n, const CudaAdamHyper& h) {
  if (n == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_PGS(pDtype, gDtype, sDtype, "adamStep", {
    const cu::AdamScalars<S> c = cu::adamScalars<S>(h);
    auto adam = adamKernel<P, G, S>;
    MT_LAUNCH(adam, cu::blocksFor(n), cu::kThreads, 0, s, static_cast<P*>(param), static_cast<S*>(master),
              static_cast<const G*>(grad), static_cast<S*>(m),
              static_cast<S*>(v), n, c);
  });
  cu::checkLaunch("adamStep");
}

int64_t cudaNormPowScratch(int64_t n) { return (n + cu::kNormChunk - 1) / cu::kNormChunk; }

double cudaNormPow(int dev, int dtype, const void* x, int64_t n, double p, double* partial) {
  if (n == 0) return 0;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const int64_t chunks = cudaNormPowScratch(n);
  if (chunks > (int64_t(1) << 31) - 1) cu::fail("normPow: too many elements");
  MT_CU_FLOAT(dtype, "normPow",
              MT_LAUNCH(cu::normPowKernel<T>, unsigned(chunks), cu::kThreads, 0, s, static_cast<const T*>(x), n, p, partial,
                        static_cast<double*>(nullptr)));
  cu::checkLaunch("normPow");
  std::vector<double> host(static_cast<size_t>(chunks));
  MT_CENSUS_CALL("memcpy", "normPow partials to host (synchronizes)", host.size() * sizeof(double));
  cudaCheck(cudaMemcpyAsync(host.data(), partial, host.size() * sizeof(double), cudaMemcpyDeviceToHost, s),
            "normPow: copying the partial sums");
  MT_CENSUS_DONE(s);
  countHostSync(dev);
  cudaCheck(cudaStreamSynchronize(s), "normPow");
  const bool isMax = std::isinf(p);
  double total = 0;
  for (double v : host) {
    if (v != v) return v;
    total = isMax ? (v > total ? v : total) : total + v;
  }
  return total;
}

}  // namespace mt
