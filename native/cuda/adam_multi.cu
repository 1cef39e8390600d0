// Adam / AdamW over a list of tensors in one launch: the optimizer's runs (one per parameter
// unless parameters share a flat buffer) would each be a launch of optim.cu's adamKernel. Both
// update an element with adam_element.cuh (test/unit/cuda_adam_multi.test.ts checks them bit for
// bit). Each launch takes up to kAdamMultiMax tensors by value; multi_tensor_launch.cuh packs them.
// A thread updates a group of W = 16 / sizeof(state) elements (4 for f32 state), finding its tensor
// once per group; where all of a tensor's pointers allow it the group moves as one access per array
// (16 bytes of state, 8 of bf16 parameter and gradient), else, and for a tensor's last short group,
// element by element. Same per-element operations either way (adam_element.cuh).
#include <string>
#include "cuda/adam_element.cuh"
#include "cuda/adam_multi.h"
#include "cuda/common.cuh"
#include "cuda/multi_tensor_launch.cuh"
#include "cuda/runtime.h"
#include "cuda/scalars_slot.cuh"
#include "cuda/vec.cuh"

namespace mt {
namespace {

template <typename S>
constexpr int kGroup = 16 / int(sizeof(S));

template <typename P, typename G, typename S>
struct List : cu::GroupSpans<kAdamMultiMax, kGroup<S>> {
  P* param[kAdamMultiMax];
  S* master[kAdamMultiMax];
  const G* grad[kAdamMultiMax];
  S* m[kAdamMultiMax];
  S* v[kAdamMultiMax];
};

// The widest instantiation (f64 state) must fit the kernel parameter limit of 4096 bytes.
static_assert(sizeof(List<double, double, double>) + sizeof(cu::AdamScalars<double>) + 2 * sizeof(void*) <= 4096,
              "adamMulti: the tensor list outgrew a kernel's 4 KiB of parameters");

// Elements [i, i + n) of tensor j: one W-wide access per array when `vec`, else one by one.
template <typename P, typename G, typename S>
__device__ __forceinline__ void updateGroup(const List<P, G, S>& l, int j, int64_t i, int n, bool vec,
                                            const cu::AdamScalars<S>& c, const S& sign) {
  if (vec) return cu::adamGroup<kGroup<S>>(l.param[j], l.master[j], l.grad[j], l.m[j], l.v[j], i, c, sign);
  for (int k = 0; k < n; k++) cu::adamElement(l.param[j], l.master[j], l.grad[j], l.m[j], l.v[j], i + k, c, sign);
}

// Bytes a launch must move: gradient read, moments and master (else the parameter) read and written, parameter written.
template <typename P, typename G, typename S>
double listBytes(const List<P, G, S>& l) {
  double bytes = 0;
  for (int j = 0; j < l.count; j++) {
    const double n = double(l.start[j + 1] - l.start[j]);
    bytes += n * (sizeof(G) + 4 * sizeof(S) + sizeof(P) + (l.master[j] ? 2 * sizeof(S) : sizeof(P)));
  }
  return bytes;
}

// Every pointer of an entry on its group's access width (W elements of its own type).
template <typename P, typename G, typename S>
bool groupAligned(const CudaAdamMultiEntry& t) {
  constexpr int W = kGroup<S>;
  return cu::alignedTo(t.param, W * sizeof(P)) && (!t.master || cu::alignedTo(t.master, W * sizeof(S))) &&
         cu::alignedTo(t.grad, W * sizeof(G)) && cu::alignedTo(t.m, W * sizeof(S)) && cu::alignedTo(t.v, W * sizeof(S));
}

// kSlot (a launch captured in a CUDA graph): the scalars are the replay's, in device memory; kDecided:
// also the step's device decision (scalars_slot.h); kValue: by value, as a kernel parameter (a
// separate instantiation: no registers held for them).
template <typename P, typename G, typename S, cu::ScalarsFrom kFrom>
__global__ void adamMultiKernel(const List<P, G, S> l, const cu::AdamScalars<S> byValue, const cu::AdamScalars<S>* slot,
                                const double* decision) {
  // A reference: the slot's scalars are re-read per element (stores may alias them; warp-uniform L1
  // hits) rather than held in registers. With 4-element groups bf16 params with f32 state take
  // 48-56 registers (ptxas sm_90): 4-5 blocks per SM, so the 1024-block cap is about two waves.
  const cu::AdamScalars<S>& c = kFrom == cu::ScalarsFrom::kValue ? byValue : *slot;
  if constexpr (kFrom == cu::ScalarsFrom::kDecided) {
    if (decision[0] != 0.0) return;  // a skipped step: nothing changes
    const S sign = cu::decidedSign(decision, c.sign);
    cu::forEachGroup(l, [&](int j, int64_t i, int n, bool vec) { updateGroup(l, j, i, n, vec, c, sign); });
  } else {
    cu::forEachGroup(l, [&](int j, int64_t i, int n, bool vec) { updateGroup(l, j, i, n, vec, c, c.sign); });
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
        cu::setGroups(l, j, t.n, groupAligned<P, G, S>(t));
      },
      [&](const List<P, G, S>& l) {
        // The census labels how many tensors move W elements at a time (tests check it), with the least bytes moved.
        MT_CENSUS_DESCRIBE(std::to_string(__builtin_popcount(l.vec)) + "/" + std::to_string(l.count) + " tensors " +
                               std::to_string(kGroup<S>) + "-wide",
                           listBytes(l));
        MT_LAUNCH(kernel, cu::multiTensorBlocks(l.group[l.count]), cu::kThreads, 0, s, l, c, fromSlot, slot.decision);
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
