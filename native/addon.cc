// The addon's single export list.
#include <napi.h>
#include "registry.h"

#ifdef MESHTRAIN_CUDA
namespace mt {
void registerCudaCaptureProbe(Napi::Object exports);  // cuda/capture_probe.cc (test tool)
}
#endif
#ifdef MESHTRAIN_CUDA_EMU
namespace mt {
void registerCudaEmuChecks(Napi::Env env, Napi::Object exports);  // cuda/emu/checks.cu (test tool)
void registerCudaEmuApiCounts(Napi::Object exports);  // cuda/emu/api_counts.cc (test tool)
void registerCudaEmuGraphChecks(Napi::Env env, Napi::Object exports);  // cuda/emu/graph_checks.cu (test tool)
void registerCudaEmuCudnnChecks(Napi::Env env, Napi::Object exports);  // cuda/emu/cudnn_graph_checks.cu (test tool)
}
#endif

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  mt::registerStorage(env, exports);
  mt::registerCopy(env, exports);
  mt::registerRandom(env, exports);
  mt::registerElementwise(env, exports);
  mt::registerReduce(env, exports);
  mt::registerMatmul(env, exports);
  mt::registerConv(env, exports);
  mt::registerDevice(env, exports);
  mt::registerSoftmax(env, exports);
  mt::registerAttention(env, exports);
  mt::registerLayerNorm(env, exports);
  mt::registerEmbedding(env, exports);
  mt::registerVocabRange(env, exports);
  mt::registerLoss(env, exports);
  mt::registerBatchNorm(env, exports);
  mt::registerPool(env, exports);
  mt::registerOptim(env, exports);
  mt::registerClipCoef(env, exports);
  mt::registerStepDecision(env, exports);
  mt::registerLossScaler(env, exports);
  mt::registerComm(env, exports);
  mt::registerCuda(env, exports);
  mt::registerFileIo(env, exports);
#ifdef MESHTRAIN_CUDA
  mt::registerCudaCaptureProbe(exports);
#endif
#ifdef MESHTRAIN_CUDA_EMU
  mt::registerCudaEmuChecks(env, exports);
  mt::registerCudaEmuApiCounts(exports);
  mt::registerCudaEmuGraphChecks(env, exports);
  mt::registerCudaEmuCudnnChecks(env, exports);
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(meshtrain, Init)
