// Adam / AdamW over a list of tensors in one launch: the optimizer's runs (one per parameter
// unless parameters share a flat buffer) would each be a launch of optim.cu's adamKernel. Both
// update an element with adam_element.cuh (test/unit/cuda_adam_multi.test.ts checks them bit for
// bit). Each launch takes up to kAdamMultiMax tensors by value.
#include "cuda/adam_element.cuh"
#include "cuda/adam_multi.h"
#include "cuda/common.cuh"
#include "cuda/runtime.h"

namespace mt {
namespace {

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
__global__ void adamMultiKernel(List<P, G, S> l, cu::AdamScalars<S> c) {
  const int64_t total = l.start[l.count];
  MT_CU_LOOP(e, total) {
    int j = 0;
    while (l.start[j + 1] <= e) j++;
    cu::adamElement(l.param[j], l.master[j], l.grad[j], l.m[j], l.v[j], e - l.start[j], c);
  }
}

template <typename P, typename G, typename S>
void launchAll(cudaStream_t s, const CudaAdamMultiEntry* e, int count, const CudaAdamHyper& h) {
  const cu::AdamScalars<S> c = cu::adamScalars<S>(h);
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
