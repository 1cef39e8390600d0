// Adam / AdamW over a list of tensors in one launch: the optimizer's runs (one per parameter
// unless parameters share a flat buffer) would each be a launch of optim.cu's adamKernel. The
// element arithmetic is that kernel's, operation for operation (test/unit/cuda_adam_multi.test.ts
// checks the two bit for bit). Each launch takes up to kAdamMultiMax tensors by value.
#include <cmath>
#include "cuda/adam_multi.h"
#include "cuda/common.cuh"
#include "cuda/runtime.h"

namespace mt {
namespace {

template <typename S>
struct Scalars {
  S b1, b2, omb1, omb2, negStep, bc2Sqrt, eps, wdL2, decay, sign;
};

template <typename P, typename G, typename S>
struct List {
  P* param[kAdamMultiMax];
  S* master[kAdamMultiMax];
  const G* grad[kAdamMultiMax];
  S* m[kAdamMultiMax];
  S* v[kAdamMultiMax];
  int64_t start[kAdamMultiMax + 1];  // tensor j holds elements [start[j], start[j + 1]) of the launch
  int count;
};

template <typename P, typename G, typename S>
__global__ void adamMultiKernel(List<P, G, S> l, Scalars<S> c) {
  const int64_t total = l.start[l.count];
  MT_CU_LOOP(e, total) {
    int j = 0;
    while (l.start[j + 1] <= e) j++;
    const int64_t i = e - l.start[j];
    S* master = l.master[j];
    S p = (master ? master[i] : S(cu::ld(l.param[j] + i))) * c.decay;
    S g = S(cu::ld(l.grad[j] + i)) * c.sign + c.wdL2 * p;
    S mi = l.m[j][i] * c.b1 + c.omb1 * g;
    S vi = l.v[j][i] * c.b2 + c.omb2 * g * g;
    l.m[j][i] = mi;
    l.v[j][i] = vi;
    S denom = sqrt(vi) / c.bc2Sqrt + c.eps;
    S np = p + c.negStep * mi / denom;
    if (master) master[i] = np;
    cu::st(l.param[j] + i, np);
  }
}

template <typename P, typename G, typename S>
void launchAll(cudaStream_t s, const CudaAdamMultiEntry* e, int count, const CudaAdamHyper& h) {
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, double(h.step));
  Scalars<S> c{S(h.beta1), S(h.beta2), S(1.0 - h.beta1), S(1.0 - h.beta2), S(-h.lr / bc1),
               S(std::sqrt(bc2)), S(h.eps), S(h.decoupled ? 0.0 : h.weightDecay),
               S(h.decoupled ? 1.0 - h.lr * h.weightDecay : 1.0), S(h.maximize ? -1 : 1)};
  auto kernel = adamMultiKernel<P, G, S>;
  List<P, G, S> l{};
  auto flush = [&] {
    if (l.count == 0) return;
    MT_LAUNCH(kernel, cu::blocksFor(l.start[l.count]), cu::kThreads, 0, s, l, c);
    cu::checkLaunch("adamMulti");
    l = List<P, G, S>{};
  };
  for (int k = 0; k < count; k++) {
    if (e[k].n == 0) continue;
    const int j = l.count;
    l.param[j] = static_cast<P*>(e[k].param);
    l.master[j] = static_cast<S*>(e[k].master);
    l.grad[j] = static_cast<const G*>(e[k].grad);
    l.m[j] = static_cast<S*>(e[k].m);
    l.v[j] = static_cast<S*>(e[k].v);
    l.start[j + 1] = l.start[j] + e[k].n;
    l.count = j + 1;
    if (l.count == kAdamMultiMax) flush();
  }
  flush();
}

}  // namespace

void cudaAdamMulti(int dev, int pDtype, int gDtype, int sDtype, const CudaAdamMultiEntry* entries, int count,
                   const CudaAdamHyper& h) {
  if (count == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(pDtype, "adamMulti", {
    using P = T;
    MT_CU_FLOAT(gDtype, "adamMulti", {
      using G = T;
      if (sDtype == cu::F32) launchAll<P, G, float>(s, entries, count, h);
      else if (sDtype == cu::F64) launchAll<P, G, double>(s, entries, count, h);
      else cu::fail("adamMulti: the state dtype must be f32 or f64");
    });
  });
}

}  // namespace mt
