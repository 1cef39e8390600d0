// Registration of the CUDA conv2d, batch norm and pooling bindings (bindings_image.cc).
#pragma once
#include <napi.h>

namespace mt {
void registerCudaImage(Napi::Object cuda);
}
