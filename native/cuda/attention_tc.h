// Launchers of the tensor-core attention kernels (attention_tc.cu): bf16/f16, head dims 32, 64,
// 128. attention.cu's launchers call them for those cases (MESHTRAIN_ATTENTION=simt keeps the
// SIMT kernels); shapes, strides and the meaning of lse are attention.h's.
#pragma once
#include "cuda/attention.h"

namespace mt {

bool cudaAttentionTcApplies(int dtype, const CudaAttnShape& g);
void cudaAttentionForwardTc(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                            const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs, void* o,
                            const CudaAttnStrides& os, void* lse);
// dvec: the per-row dot(dO, o), already computed (f32, one per query row).
void cudaAttentionBackwardTc(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                             const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs,
                             const void* dO, const CudaAttnStrides& gs, const void* lse, const void* dvec, void* dq,
                             const CudaAttnStrides& dqs, void* dk, const CudaAttnStrides& dks, void* dv,
                             const CudaAttnStrides& dvs);

}  // namespace mt
