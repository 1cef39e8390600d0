// Launchers of the fused attention kernels (attention.cu). Plain declarations, no CUDA types:
// bindings_attention.cc resolves storages to device pointers and calls these on the device's
// compute stream. Dtypes are the codes of native/tensor/dtype.h (f32, f64, bf16, f16).
#pragma once
#include <cstdint>
#include "tensor/attention_geom.h"

namespace mt {

// q [batch, heads, tq, dim], k and v [batch, heads, tk, dim]; dim 32, 64 or 128. The CPU kernels
// (native/cpu/attention.cc) take the same geometry and strides (tensor/attention_geom.h).
using CudaAttnShape = AttnGeom;
// Element strides of the batch, head and position dims; the head dim has stride 1.
using CudaAttnStrides = AttnStrides;

// o = softmax(scale * q kᵀ [+ mask]) v; lse [batch * heads * tq] (f64 for f64, else f32) is the
// per-row log-sum-exp the backward needs.
void cudaAttentionForward(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                          const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs, void* o,
                          const CudaAttnStrides& os, void* lse);
// Elements (of lse's dtype) of the backward's scratch: one per query row.
int64_t cudaAttentionScratch(const CudaAttnShape& g);
// dq, dk, dv (overwritten) from the forward's q, k, v, o, lse and the output gradient dO.
void cudaAttentionBackward(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                           const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs,
                           const void* o, const CudaAttnStrides& os, const void* dO, const CudaAttnStrides& gs,
                           const void* lse, void* dq, const CudaAttnStrides& dqs, void* dk, const CudaAttnStrides& dks,
                           void* dv, const CudaAttnStrides& dvs, void* scratch);

}  // namespace mt
