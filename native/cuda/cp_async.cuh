// Asynchronous global -> shared copies (PTX cp.async, sm_80 and later): a thread queues 16-byte
// copies, closes them into a group with commit(), and wait<N>() blocks until at most N of its
// committed groups are still in flight; a __syncthreads() after the wait makes every thread's
// copies visible to the block. Loads of the next tile can then overlap the math on this one.
// The emulated device queues the copies per thread and performs them only at the wait, so a read
// before the wait and its barrier sees the old shared memory (NaN bytes in a fresh block), not
// the copied values: the ordering mistakes a GPU would turn into races fail there reproducibly.
#pragma once
#include <cstdint>
#include "cuda/common.cuh"

namespace mt {
namespace cpasync {

// 16 bytes from global `src` to shared `dst`, both 16-byte aligned.
__device__ __forceinline__ void copy16(void* dst, const void* src) {
#ifdef MESHTRAIN_CUDA_EMU
  if ((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) & 15)
    emu::kernelFault("cp.async: a 16-byte copy between addresses that are not both 16-byte aligned");
  emu::asyncCopy(dst, src, 16);
#else
  const unsigned s = unsigned(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(src) : "memory");
#endif
}

// Closes this thread's copies issued since the last commit into one group (possibly empty).
__device__ __forceinline__ void commit() {
#ifdef MESHTRAIN_CUDA_EMU
  emu::asyncCommit();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Until at most N of this thread's committed groups are in flight.
template <int N>
__device__ __forceinline__ void wait() {
#ifdef MESHTRAIN_CUDA_EMU
  emu::asyncWait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

}  // namespace cpasync
}  // namespace mt
