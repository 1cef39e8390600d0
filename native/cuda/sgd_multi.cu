// SGD (momentum, dampening, Nesterov, weight decay) over a list of tensors in one launch: the
// optimizer's runs (one per parameter unless parameters share a flat buffer) would each be a
// launch of optim.cu's sgdKernel (314 for ResNet-101). Both update an element with
// sgd_element.cuh (test/unit/cuda_sgd_multi.test.ts checks them bit for bit).
#include "cuda/common.cuh"
#include "cuda/runtime.h"
#include "cuda/sgd_element.cuh"
#include "cuda/sgd_multi.h"

namespace mt {
namespace {

template <typename P, typename G, typename S>
struct List {
  P* param[kSgdMultiMax];
  S* master[kSgdMultiMax];
  const G* grad[kSgdMultiMax];
  S* buf[kSgdMultiMax];
  int64_t start[kSgdMultiMax + 1];  // tensor j holds elements [start[j], start[j + 1]) of the launch
  int count;
};

// The widest instantiation (f64 state) must fit the kernel parameter limit of 4096 bytes.
static_assert(sizeof(List<double, double, double>) + sizeof(cu::SgdScalars<double>) <= 4096,
              "sgdMulti: the tensor list outgrew a kernel's 4 KiB of parameters");

// Blocks per launch at most: about one full wave on an H100/H200 (132 SMs x 8 blocks of 256), each
// thread striding over many elements. Fewer threads also keep the emulated device, which copies a
// launch's 4 KiB of parameters for every thread, from spending minutes on ResNet-101's 42M elements.
constexpr unsigned kMaxBlocks = 1024;

template <typename P, typename G, typename S>
__global__ void sgdMultiKernel(const List<P, G, S> l, const cu::SgdScalars<S> c) {
  const int64_t total = l.start[l.count];
  int j = 0;
  MT_CU_LOOP(e, total) {
    // The tensor holding e: the last j with start[j] <= e (starts strictly increase: no empty
    // tensors). e only grows along the loop, so the search starts at the previous element's tensor.
    int hi = l.count - 1;
    while (j < hi) {
      const int mid = (j + hi + 1) >> 1;
      if (l.start[mid] <= e) j = mid;
      else hi = mid - 1;
    }
    cu::sgdElement(l.param[j], l.master[j], l.grad[j], l.buf[j], e - l.start[j], c);
  }
}

template <typename P, typename G, typename S>
void launchAll(cudaStream_t s, const CudaSgdMultiEntry* e, int count, const CudaSgdHyper& h) {
  const cu::SgdScalars<S> c = cu::sgdScalars<S>(h);
  auto kernel = sgdMultiKernel<P, G, S>;
  List<P, G, S> l{};
  auto flush = [&] {
    if (l.count == 0) return;
    const unsigned blocks = cu::blocksFor(l.start[l.count]);
    MT_LAUNCH(kernel, blocks < kMaxBlocks ? blocks : kMaxBlocks, cu::kThreads, 0, s, l, c);
    cu::checkLaunch("sgdMulti");
    l = List<P, G, S>{};
  };
  for (int k = 0; k < count; k++) {
    if (e[k].n <= 0) continue;
    const int j = l.count;
    l.param[j] = static_cast<P*>(e[k].param);
    l.master[j] = static_cast<S*>(e[k].master);
    l.grad[j] = static_cast<const G*>(e[k].grad);
    l.buf[j] = static_cast<S*>(e[k].buf);
    l.start[j + 1] = l.start[j] + e[k].n;
    l.count = j + 1;
    if (l.count == kSgdMultiMax) flush();
  }
  flush();
}

}  // namespace

void cudaSgdMulti(int dev, int pDtype, int gDtype, int sDtype, const CudaSgdMultiEntry* entries, int count,
                  const CudaSgdHyper& h) {
  if (count == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_FLOAT(pDtype, "sgdMulti", {
    using P = T;
    MT_CU_FLOAT(gDtype, "sgdMulti", {
      using G = T;
      if (sDtype == cu::F32) launchAll<P, G, float>(s, entries, count, h);
      else if (sDtype == cu::F64) launchAll<P, G, double>(s, entries, count, h);
      else cu::fail("sgdMulti: the state dtype must be f32 or f64");
    });
  });
}

}  // namespace mt
