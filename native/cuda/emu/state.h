// Internal to the emulated device (test tool): what the launcher (fibers.cc) and the runtime
// (runtime.cc) share.
#pragma once
#include <mutex>
#include <string>
#include "cuda/emu/kernel.h"

// The emulator's own code names the coordinates' fields; only kernels read the builtins.
#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim

namespace mt {
namespace emu {

// The error cudaGetLastError returns next (launch configuration errors), with a detail that
// cudaGetErrorString appends.
void setLastError(cudaError_t e, const std::string& detail);
// An execution error of a kernel: surfaces once at the next synchronizing call of that device.
void setPendingError(cudaError_t e, const std::string& detail);
int currentDevice();
// Launches are serialized: one static instance of each __shared__ variable serves every block.
std::recursive_mutex& launchMutex();
// The largest dynamic shared memory `fn` may use (48 KiB unless cudaFuncSetAttribute raised it).
size_t maxDynamicShared(const void* fn);
// Null, the legacy/per-thread handles, or a live stream of `dev`; else why not.
bool streamUsable(cudaStream_t s, int dev, std::string* why);
// Which allocation `p` points into: empty when it is live device memory of `dev` or pinned host
// memory, else why a kernel must not be given it.
std::string kernelPointerProblem(const void* p, int dev);
// Checks every live allocation's guard bytes after `li` ran; a damaged guard is a pending error
// naming the kernel and the allocation.
void checkGuards(const LaunchInfo& li);
std::string launchName(const LaunchInfo& li);

}  // namespace emu
}  // namespace mt
