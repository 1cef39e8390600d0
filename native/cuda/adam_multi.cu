// Adam / AdamW over a list of tensors in one launch: the optimizer's runs (one per parameter
// unless parameters share a flat buffer) would each be a launch of optim.cu's adamKernel. Both
// update an element with adam_element.cuh (test/unit/cuda_adam_multi.test.ts checks them bit for
// bit). Each launch takes up to kAdamMultiMax tensors by value; multi_tensor_launch.cuh packs them
// and finds each element's tensor, as for sgd_multi.cu.
#include "cuda/adam_element.cuh"
#include "cuda/adam_multi.h"
#include "cuda/common.cuh"
#include "cuda/multi_tensor_launch.cuh"
#include "cuda/runtime.h"
#include "cuda/scalars_slot.cuh"

namespace mt {
namespace {

template <typename P, typename G, typename S>
struct List : cu::TensorSpans<kAdamMultiMax> {
  P* param[kAdamMultiMax];
  S* master[kAdamMultiMax];
  const G* grad[kAdamMultiMax];
  S* m[kAdamMultiMax];
  S* v[kAdamMultiMax];
};

// The widest instantiation (f64 state) must fit the kernel parameter limit of 4096 bytes.
static_assert(sizeof(List<double, double, double>) + sizeof(cu::AdamScalars<double>) + 2 * sizeof(void*) <= 4096,
              "adamMulti: the tensor list outgrew a kernel's 4 KiB of parameters");

// kSlot (a launch captured in a CUDA graph): the scalars are the replay's, in device memory; kDecided:
// also the step's device decision (scalars_slot.h); kValue: by value, as a kernel parameter (a
// separate instantiation: no registers held for them).
template <typename P, typename G, typename S, cu::ScalarsFrom kFrom>
__global__ void adamMultiKernel(const List<P, G, S> l, const cu::AdamScalars<S> byValue, const cu::AdamScalars<S>* slot,
                                const double* decision) {
  // A reference: the slot's scalars are re-read per element (stores may alias them; warp-uniform L1
  // hits). Copied into registers they cost 38 for bf16 params with f32 state (ptxas sm_90; 31 this
  // way): 6 blocks per SM instead of 8, so the 1024-block cap would no longer be one wave.
  const cu::AdamScalars<S>& c = kFrom == cu::ScalarsFrom::kValue ? byValue : *slot;
  if constexpr (kFrom == cu::ScalarsFrom::kDecided) {
    if (decision[0] != 0.0) return;  // a skipped step: nothing changes
    const S sign = cu::decidedSign(decision, c.sign);
    cu::forEachElement(l, [&](int j, int64_t i) {
      cu::adamElement(l.param[j], l.master[j], l.grad[j], l.m[j], l.v[j], i, c, sign);
    });
  } else {
    cu::forEachElement(l, [&](int j, int64_t i) {
      cu::adamElement(l.param[j], l.master[j], l.grad[j], l.m[j], l.v[j], i, c);
    });
  }
}

template <typename P, typename G, typename S>
void launchAll(cudaStream_t s, const CudaAdamMultiEntry* e, int count, const CudaAdamHyper& h,
               const CudaScalarsSlot& slot) {
  const cu::AdamScalars<S> c = cu::adamScalars<S>(h);
  if (slot.mode == CudaScalarsSlot::kWrite) return cu::writeScalars(s, slot, c, "adamMulti");
  const cu::AdamScalars<S>* fromSlot = cu::scalarsSource<cu::AdamScalars<S>>(slot);
  using cu::ScalarsFrom;
  auto kernel = !fromSlot        ? adamMultiKernel<P, G, S, ScalarsFrom::kValue>
                : slot.decision ? adamMultiKernel<P, G, S, ScalarsFrom::kDecided>
                                : adamMultiKernel<P, G, S, ScalarsFrom::kSlot>;
  cu::launchTensorLists<List<P, G, S>>(
      e, count,
      [](List<P, G, S>& l, int j, const CudaAdamMultiEntry& t) {
        l.param[j] = static_cast<P*>(t.param);
        l.master[j] = static_cast<S*>(t.master);
        l.grad[j] = static_cast<const G*>(t.grad);
        l.m[j] = static_cast<S*>(t.m);
        l.v[j] = static_cast<S*>(t.v);
      },
      [&](const List<P, G, S>& l) {
        MT_LAUNCH(kernel, cu::multiTensorBlocks(l.start[l.count]), cu::kThreads, 0, s, l, c, fromSlot, slot.decision);
        cu::checkLaunch("adamMulti");
      });
}

}  // namespace

void cudaAdamMulti(int dev, int pDtype, int gDtype, int sDtype, const CudaAdamMultiEntry* entries, int count,
                   const CudaAdamHyper& h, const CudaScalarsSlot& slot) {
  if (count == 0 && slot.mode != CudaScalarsSlot::kWrite) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(pDtype, "adamMulti", {
    using P = T;
    MT_CU_FLOAT(gDtype, "adamMulti", {
      using G = T;
      if (sDtype == cu::F32) launchAll<P, G, float>(s, entries, count, h, slot);
      else if (sDtype == cu::F64) launchAll<P, G, double>(s, entries, count, h, slot);
      else cu::fail("adamMulti: the state dtype must be f32 or f64");
    });
  });
}

}  // namespace mt
