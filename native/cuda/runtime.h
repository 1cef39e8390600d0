// Helpers for code that includes the CUDA runtime: error checks naming the call, and each
// device's two streams (compute and communication) with events to order one after the other.
#pragma once
#include <cuda_runtime.h>
#include "util/check.h"

namespace mt {

inline void cudaCheck(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the next call starts clean
    throw Error(cat(what, ": CUDA error ", int(err), " (", cudaGetErrorName(err), ": ", cudaGetErrorString(err), ")"));
  }
}

// Checks the launch configuration of the kernel just launched (not its completion).
inline void cudaCheckLaunch(const char* kernel) { cudaCheck(cudaGetLastError(), kernel); }

// Makes `dev` current on this thread: no runtime call when this thread's last cudaUseDevice made
// it current (a per-thread copy), else cudaGetDevice and, if it differs, cudaSetDevice.
void cudaUseDevice(int dev);
// Code that calls cudaSetDevice itself calls this after, so cudaUseDevice asks the runtime again.
void cudaForgetCurrentDevice();
// Kernels run on the compute stream; collectives on the communication stream. Both are created
// non-blocking on first use, so they never synchronize with the legacy default stream.
cudaStream_t computeStream(int dev);
cudaStream_t commStream(int dev);
// Work queued on `waiter` after this call starts only once the work queued so far on `on` is done.
void streamWaitStream(int dev, cudaStream_t waiter, cudaStream_t on);
// Blocks until the device's compute stream is idle; errors of earlier kernels surface here.
void cudaSyncCompute(int dev, const char* what);

}  // namespace mt
