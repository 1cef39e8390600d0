// Launcher of the FA2-style attention backward (attention_fa2_bwd.cu): bf16/f16, head dims 64
// and 128, on PTX mma.sync with scores, probabilities and gradients in registers. Same contract
// as cudaAttentionBackwardTc (attention_tc.h): shapes and strides of attention.h, lse of the
// forward, dvec the per-row dot(dO, o) already computed. attention.cu picks it under
// MESHTRAIN_ATTENTION=fa2 where it applies; anything else keeps the existing kernels.
#pragma once
#include "cuda/attention.h"

namespace mt {

bool cudaAttentionFa2BwdApplies(int dtype, const CudaAttnShape& g);
void cudaAttentionBackwardFa2(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                              const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs,
                              const void* dO, const CudaAttnStrides& gs, const void* lse, const void* dvec, void* dq,
                              const CudaAttnStrides& dqs, void* dk, const CudaAttnStrides& dks, void* dv,
                              const CudaAttnStrides& dvs);

}  // namespace mt
