// Adam / AdamW over many tensors per launch (adam_multi.cu). Plain declarations (no CUDA types).
#pragma once
#include <cstdint>
#include "cuda/kernels.h"
#include "cuda/scalars_slot.h"

namespace mt {

// Tensors per launch: the list travels as a kernel argument, which must stay within the 4 KiB
// every CUDA driver accepts (48 bytes a tensor; static_assert in adam_multi.cu).
constexpr int kAdamMultiMax = 24;

// One tensor's device ranges of n elements; master may be null (then the param is the weight).
struct CudaAdamMultiEntry {
  void* param;
  const void* grad;
  void* m;
  void* v;
  void* master;
  int64_t n;
};

// Every entry with the same dtypes and hyperparameters (one step number); ceil(count / 24) launches.
void cudaAdamMulti(int dev, int pDtype, int gDtype, int sDtype, const CudaAdamMultiEntry* entries, int count,
                   const CudaAdamHyper& h, const CudaScalarsSlot& slot = {});

}  // namespace mt
