// Many tensors per launch, shared by the many-tensor optimizers (sgd_multi.cu, adam_multi.cu): a
// list of up to Max tensors travels by value as a kernel argument; its element range is the
// tensors' elements one after another, and each thread finds the tensor of each of its elements
// (or, GroupSpans, of each of its groups of W elements).
#pragma once
#include "cuda/common.cuh"

namespace mt {
namespace cu {

// Where each tensor of a list lies in the launch's element range. An optimizer's list derives
// from it and adds its pointer arrays (indexed by the same j).
template <int Max>
struct TensorSpans {
  static constexpr int kMax = Max;
  int64_t start[Max + 1];  // tensor j holds elements [start[j], start[j + 1]) of the launch
  int count;
};

// Blocks per launch at most: about one full wave on an H100/H200 (132 SMs x 8 blocks of 256), each
// thread striding over many elements. Fewer threads also keep the emulated device, which copies a
// launch's parameters (up to 4 KiB) for every thread, from spending minutes on a large model's step.
constexpr unsigned kMultiTensorMaxBlocks = 1024;

inline unsigned multiTensorBlocks(int64_t total) {
  const unsigned b = blocksFor(total);
  return b < kMultiTensorMaxBlocks ? b : kMultiTensorMaxBlocks;
}

// Spans counted in groups of W elements as well (a tensor's last group may be short): a thread
// takes a whole group, finds its tensor once for all W elements and, where bit j of `vec` says
// tensor j's pointers allow it, reads and writes the group as single W-element accesses.
template <int Max, int W>
struct GroupSpans : TensorSpans<Max> {
  static_assert(Max <= 32, "GroupSpans: one bit of `vec` per tensor");
  static constexpr int kWidth = W;
  int64_t group[Max + 1];  // tensor j holds groups [group[j], group[j + 1])
  unsigned vec;
};

// Slot j's group span and vector bit; call from launchTensorLists' fill (start[j] is set by then).
template <typename L>
void setGroups(L& l, int j, int64_t n, bool vec) {
  l.group[j + 1] = l.group[j] + (n + L::kWidth - 1) / L::kWidth;
  if (vec) l.vec |= 1u << j;
}

// The last j with start[j] <= e (starts strictly increase: no empty tensors). `from` is the
// tensor of an earlier index of this thread (indices only grow along a grid-stride loop), so the
// binary search starts there instead of at 0.
__device__ __forceinline__ int tensorOf(const int64_t* start, int count, int64_t e, int from) {
  int j = from, hi = count - 1;
  while (j < hi) {
    const int mid = (j + hi + 1) >> 1;
    if (start[mid] <= e) j = mid;
    else hi = mid - 1;
  }
  return j;
}

// Calls f(j, i) for this thread's elements of the list: element i of tensor j.
template <typename L, typename F>
__device__ __forceinline__ void forEachElement(const L& l, F f) {
  const int64_t total = l.start[l.count];
  int j = 0;
  MT_CU_LOOP(e, total) {
    j = tensorOf(l.start, l.count, e, j);
    f(j, e - l.start[j]);
  }
}

// Calls f(j, i, n, vec) for this thread's groups of a GroupSpans list: elements [i, i + n) of
// tensor j (n = W but in a tensor's last group); vec: whole and vector-accessible.
template <typename L, typename F>
__device__ __forceinline__ void forEachGroup(const L& l, F f) {
  constexpr int W = L::kWidth;
  const int64_t total = l.group[l.count];
  int j = 0;
  MT_CU_LOOP(e, total) {
    j = tensorOf(l.group, l.count, e, j);
    const int64_t i = (e - l.group[j]) * W, left = l.start[j + 1] - l.start[j] - i;
    const int n = left < W ? int(left) : W;
    f(j, i, n, n == W && (l.vec >> j & 1u));
  }
}

// Packs the nonempty entries (each with a length n) into lists of up to L::kMax tensors and hands
// each full list, and the last one, to launch(list). fill(list, j, entry) sets slot j's pointers.
template <typename L, typename E, typename Fill, typename Launch>
void launchTensorLists(const E* entries, int count, Fill fill, Launch launch) {
  L l{};
  auto flush = [&] {
    if (l.count == 0) return;
    launch(l);
    l = L{};
  };
  for (int k = 0; k < count; k++) {
    const E& e = entries[k];
    if (e.n <= 0) continue;  // an empty tensor would break the strictly increasing starts
    const int j = l.count;
    fill(l, j, e);
    l.start[j + 1] = l.start[j] + e.n;
    l.count = j + 1;
    if (l.count == L::kMax) flush();
  }
  flush();
}

}  // namespace cu
}  // namespace mt
