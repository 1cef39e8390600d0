// Adds the CUDA layer norm, embedding and cross-entropy bindings to the addon's `cuda` object.
#pragma once
#include <napi.h>

namespace mt {
void registerCudaNn(Napi::Object cuda);
}
