// Launcher of the register-resident tensor-core attention forward (attention_fa2.cu): bf16/f16,
// head dims 32, 64, 128. attention.cu calls it when MESHTRAIN_ATTENTION=fa2 and it applies;
// shapes, strides and lse mean what attention.h says (the same contract as cudaAttentionForwardTc).
#pragma once
#include "cuda/attention.h"

namespace mt {

bool cudaAttentionFa2Applies(int dtype, const CudaAttnShape& g);
void cudaAttentionForwardFa2(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                             const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs, void* o,
                             const CudaAttnStrides& os, void* lse);

}  // namespace mt
