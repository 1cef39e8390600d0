// MT_HOST_DEVICE: a function compiled for both the CPU and, under nvcc, the GPU, for the rules that the
// CPU reference and the CUDA kernel must share (philox.h, vocab_range.h, clip_coef.h).
#pragma once

#ifdef __CUDACC__
#define MT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MT_HOST_DEVICE inline
#endif
