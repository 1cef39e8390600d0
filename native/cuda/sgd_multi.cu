// SGD (momentum, dampening, Nesterov, weight decay) over a list of tensors in one launch: the
// optimizer's runs (one per parameter unless parameters share a flat buffer) would each be a
// launch of optim.cu's sgdKernel (314 for ResNet-101). Both update an element with
// sgd_element.cuh (test/unit/cuda_sgd_multi.test.ts checks them bit for bit).
#include "cuda/common.cuh"
#include "cuda/multi_tensor_launch.cuh"
#include "cuda/runtime.h"
#include "cuda/scalars_slot.cuh"
#include "cuda/sgd_element.cuh"
#include "cuda/sgd_multi.h"

namespace mt {
namespace {

template <typename P, typename G, typename S>
struct List : cu::TensorSpans<kSgdMultiMax> {
  P* param[kSgdMultiMax];
  S* master[kSgdMultiMax];
  const G* grad[kSgdMultiMax];
  S* buf[kSgdMultiMax];
};

// The widest instantiation (f64 state) must fit the kernel parameter limit of 4096 bytes.
static_assert(sizeof(List<double, double, double>) + sizeof(cu::SgdScalars<double>) + 2 * sizeof(void*) <= 4096,
              "sgdMulti: the tensor list outgrew a kernel's 4 KiB of parameters");

// kSlot (a launch captured in a CUDA graph): the scalars are the replay's, in device memory; kDecided:
// also the step's device decision (scalars_slot.h); kValue: by value, as a kernel parameter (a
// separate instantiation: no registers held for them).
template <typename P, typename G, typename S, cu::ScalarsFrom kFrom>
__global__ void sgdMultiKernel(const List<P, G, S> l, const cu::SgdScalars<S> byValue, const cu::SgdScalars<S>* slot,
                               const double* decision) {
  // A reference, as adam_multi.cu: the slot's scalars are re-read per element (warp-uniform L1 hits)
  // rather than held in registers.
  const cu::SgdScalars<S>& c = kFrom == cu::ScalarsFrom::kValue ? byValue : *slot;
  if constexpr (kFrom == cu::ScalarsFrom::kDecided) {
    if (decision[0] != 0.0) return;  // a skipped step: nothing changes
    const S sign = cu::decidedSign(decision, c.sign);
    cu::forEachElement(l, [&](int j, int64_t i) {
      cu::sgdElement(l.param[j], l.master[j], l.grad[j], l.buf[j], i, c, sign);
    });
  } else {
    cu::forEachElement(l, [&](int j, int64_t i) {
      cu::sgdElement(l.param[j], l.master[j], l.grad[j], l.buf[j], i, c);
    });
  }
}

template <typename P, typename G, typename S>
void launchAll(cudaStream_t s, const CudaSgdMultiEntry* e, int count, const CudaSgdHyper& h,
               const CudaScalarsSlot& slot) {
  const cu::SgdScalars<S> c = cu::sgdScalars<S>(h);
  if (slot.mode == CudaScalarsSlot::kWrite) return cu::writeScalars(s, slot, c, "sgdMulti");
  const cu::SgdScalars<S>* fromSlot = cu::scalarsSource<cu::SgdScalars<S>>(slot);
  using cu::ScalarsFrom;
  auto kernel = !fromSlot        ? sgdMultiKernel<P, G, S, ScalarsFrom::kValue>
                : slot.decision ? sgdMultiKernel<P, G, S, ScalarsFrom::kDecided>
                                : sgdMultiKernel<P, G, S, ScalarsFrom::kSlot>;
  cu::launchTensorLists<List<P, G, S>>(
      e, count,
      [](List<P, G, S>& l, int j, const CudaSgdMultiEntry& t) {
        l.param[j] = static_cast<P*>(t.param);
        l.master[j] = static_cast<S*>(t.master);
        l.grad[j] = static_cast<const G*>(t.grad);
        l.buf[j] = static_cast<S*>(t.buf);
      },
      [&](const List<P, G, S>& l) {
        MT_LAUNCH(kernel, cu::multiTensorBlocks(l.start[l.count]), cu::kThreads, 0, s, l, c, fromSlot, slot.decision);
        cu::checkLaunch("sgdMulti");
      });
}

}  // namespace

void cudaSgdMulti(int dev, int pDtype, int gDtype, int sDtype, const CudaSgdMultiEntry* entries, int count,
                  const CudaSgdHyper& h, const CudaScalarsSlot& slot) {
  if (count == 0 && slot.mode != CudaScalarsSlot::kWrite) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(pDtype, "sgdMulti", {
    using P = T;
    MT_CU_FLOAT(gDtype, "sgdMulti", {
      using G = T;
      if (sDtype == cu::F32) launchAll<P, G, float>(s, entries, count, h, slot);
      else if (sDtype == cu::F64) launchAll<P, G, double>(s, entries, count, h, slot);
      else cu::fail("sgdMulti: the state dtype must be f32 or f64");
    });
  });
}

}  // namespace mt
