// Every kernel family registers its functions here; addon.cc calls them in one list.
#pragma once
#include <napi.h>

namespace mt {
void registerStorage(Napi::Env env, Napi::Object exports);
void registerCopy(Napi::Env env, Napi::Object exports);
void registerRandom(Napi::Env env, Napi::Object exports);
void registerElementwise(Napi::Env env, Napi::Object exports);
void registerReduce(Napi::Env env, Napi::Object exports);
void registerMatmul(Napi::Env env, Napi::Object exports);
void registerConv(Napi::Env env, Napi::Object exports);
void registerDevice(Napi::Env env, Napi::Object exports);
void registerSoftmax(Napi::Env env, Napi::Object exports);
void registerAttention(Napi::Env env, Napi::Object exports);
void registerLayerNorm(Napi::Env env, Napi::Object exports);
void registerEmbedding(Napi::Env env, Napi::Object exports);
void registerVocabRange(Napi::Env env, Napi::Object exports);
void registerLoss(Napi::Env env, Napi::Object exports);
void registerBatchNorm(Napi::Env env, Napi::Object exports);
void registerPool(Napi::Env env, Napi::Object exports);
void registerOptim(Napi::Env env, Napi::Object exports);
void registerClipCoef(Napi::Env env, Napi::Object exports);
void registerStepDecision(Napi::Env env, Napi::Object exports);
void registerLossScaler(Napi::Env env, Napi::Object exports);
void registerComm(Napi::Env env, Napi::Object exports);
void registerCuda(Napi::Env env, Napi::Object exports);
void registerFileIo(Napi::Env env, Napi::Object exports);
}  // namespace mt
