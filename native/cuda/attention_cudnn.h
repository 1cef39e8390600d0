// Fused attention through cuDNN's graph (backend) API: the SDPA forward and backward graphs that
// cudnn-frontend builds for cuDNN 9 (attention_cudnn.cc), taken under MESHTRAIN_ATTENTION=cudnn.
// Shapes, strides and lse mean what attention.h says; cuDNN's softmax Stats are that lse (natural-
// log log-sum-exp of the scaled, masked scores per query row, f32), so a cuDNN forward pairs with
// any backward and the reverse. Each returns false, having done nothing, for dtypes other than
// bf16/f16 (silently: not cuDNN's) and where cuDNN does not take the problem (no library, no
// engine, head dim other than 64/128, misaligned rows, a plan not yet built inside a graph capture):
// the reason is recorded (cudnnAttentionStats) and printed once per problem (a call whose pointers
// are not 16-byte aligned is recorded only); the caller then runs its own kernels.
#pragma once
#include <cstdint>
#include <string>
#include "cuda/attention.h"

namespace mt {

bool cudnnAttentionForward(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                           const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs, void* o,
                           const CudaAttnStrides& os, void* lse);
// softmaxSum: f32 scratch of cudaAttentionScratch(g) elements (the graph's per-row dot(dO, o)).
bool cudnnAttentionBackward(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                            const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs,
                            const void* o, const CudaAttnStrides& os, const void* dO, const CudaAttnStrides& gs,
                            const void* lse, void* dq, const CudaAttnStrides& dqs, void* dk, const CudaAttnStrides& dks,
                            void* dv, const CudaAttnStrides& dvs, void* softmaxSum);

// Plans built (execution plans finalized, one per problem), calls cuDNN ran, calls it refused, and
// the last refusal's reason ("" when none).
struct CudnnAttentionStats {
  int64_t plansBuilt = 0, calls = 0, refusals = 0;
  std::string lastRefusal;
};
CudnnAttentionStats cudnnAttentionStats();

}  // namespace mt
