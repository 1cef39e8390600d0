// The `nccl` object of the addon (bindings_nccl.cc), registered from bindings.cc in every build.
#pragma once
#include <napi.h>

namespace mt {
void registerNccl(Napi::Env env, Napi::Object exports);
}
