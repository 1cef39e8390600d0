// Registration of the CUDA bindings that live outside bindings.cc.
#pragma once
#include <napi.h>

namespace mt {
void registerCudaNn(Napi::Object cuda);
// attentionForward, attentionBackward (bindings_attention.cc).
void registerCudaAttention(Napi::Object cuda);
// indexCheck, embeddingGather/Scatter, crossEntropyForwardDevice (bindings_index.cc).
void registerCudaIndex(Napi::Object cuda);
// benchCublasLtMatmul, the benchmark's direct-cuBLASLt peer (matmul_bench.cc).
void registerCudaBench(Napi::Object exports);
}
