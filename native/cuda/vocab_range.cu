// Vocabulary-slice indexing on the device (reference: native/cpu/vocab_range.cc): local i32 rows,
// here/valid masks and a bad-id flag for vocab-parallel embedding and cross-entropy, so the ids
// never go to the host. The flag is read at the next synchronization (src/tensor/device_checks.ts).
#include <cstdint>
#include "cuda/common.cuh"
#include "cuda/runtime.h"
#include "cuda/vocab_range.h"

namespace mt {
namespace {

using u64 = unsigned long long;

template <typename I, typename M>
__global__ void vocabRangeKernel(const I* ids, int64_t n, VocabSlice s, int32_t* local, M* here, M* valid,
                                 u64* flag) {
  MT_CU_LOOP(i, n) {
    const int64_t v = int64_t(ids[i]);
    const VocabEntry e = vocabEntry(v, s);
    // Integer atomic: the first bad position wins whatever the order.
    if (v != s.ignore && !e.valid) atomicMax(flag, u64(n - i));
    local[i] = e.local;
    cu::st(here + i, e.here ? 1.0f : 0.0f);
    if (valid) cu::st(valid + i, e.valid ? 1.0f : 0.0f);
  }
}

}  // namespace

void cudaVocabRange(int dev, int idDtype, const void* ids, int64_t n, const VocabSlice& s, int32_t* local,
                    int maskDtype, void* here, void* valid, void* flag) {
  cudaUseDevice(dev);
  cudaStream_t st = computeStream(dev);
  cudaCheck(cudaMemsetAsync(flag, 0, sizeof(u64), st), "cudaMemsetAsync(vocabRange flag)");
  if (n == 0) return;
  MT_CU_FLOAT(maskDtype, "vocabRange", {
    switch (idDtype) {
      case cu::I32: {
        auto kern = vocabRangeKernel<int32_t, T>;
        MT_LAUNCH(kern, cu::blocksFor(n), cu::kThreads, 0, st, static_cast<const int32_t*>(ids), n, s, local,
                  static_cast<T*>(here), static_cast<T*>(valid), static_cast<u64*>(flag));
        break;
      }
      case cu::I64: {
        auto kern = vocabRangeKernel<int64_t, T>;
        MT_LAUNCH(kern, cu::blocksFor(n), cu::kThreads, 0, st, static_cast<const int64_t*>(ids), n, s, local,
                  static_cast<T*>(here), static_cast<T*>(valid), static_cast<u64*>(flag));
        break;
      }
      default:
        cu::fail("vocabRange: ids must be i32 or i64");
    }
  });
  cu::checkLaunch("vocabRangeKernel");
}

}  // namespace mt
