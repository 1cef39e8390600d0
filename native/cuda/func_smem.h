// A kernel's dynamic shared memory limit raised once per device: the attribute stays set in the
// device's context, and cudaFuncSetAttribute costs a runtime call on every launch otherwise
// (attention's tensor-core kernels asked before each of their 36 launches in a GPT-2 124M step).
#pragma once
#include <cstddef>

namespace mt {

// Lets `kernel` use `bytes` of dynamic shared memory on cuda:dev (makes dev current); calls
// cudaFuncSetAttribute only when no earlier call allowed that much there. Throws naming `name`.
void cudaAllowDynamicSmem(int dev, const void* kernel, size_t bytes, const char* name);

}  // namespace mt
