// SGD over many tensors per launch (sgd_multi.cu). Plain declarations (no CUDA types).
#pragma once
#include <cstdint>
#include "cuda/kernels.h"
#include "cuda/scalars_slot.h"

namespace mt {

// Tensors per launch: the list travels as a kernel argument, which must stay within the 4 KiB
// every CUDA driver accepts (40 bytes a tensor; static_assert in sgd_multi.cu).
constexpr int kSgdMultiMax = 96;

// One tensor's device ranges of n elements; buf (no momentum) and master (the param is the
// weight) may be null.
struct CudaSgdMultiEntry {
  void* param;
  const void* grad;
  void* buf;
  void* master;
  int64_t n;
};

// Every entry with the same dtypes and hyperparameters (one firstStep); ceil(count / 96) launches.
void cudaSgdMulti(int dev, int pDtype, int gDtype, int sDtype, const CudaSgdMultiEntry* entries, int count,
                  const CudaSgdHyper& h, const CudaScalarsSlot& slot = {});

}  // namespace mt
