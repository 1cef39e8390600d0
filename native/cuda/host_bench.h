// Host cost of single CUDA runtime calls (bench/gpu_host_ops.ts): each loop issues `n` calls
// back to back on cuda:dev's compute stream, with the stream idle at the start, and returns the
// host seconds they took. Keep n below the launch queue's depth (~1000) so the device's own pace
// does not show. CUDA builds only.
#pragma once
#include <cstdint>
#include <string>

namespace mt {

// The calls a loop can time; cudaHostLoopNames lists them for error messages.
enum class HostLoop {
  Launch,             // an empty kernel through MT_LAUNCH: the cudaLaunchKernel floor
  LaunchChecked,      // the same plus cudaGetLastError, as every launcher does (cu::checkLaunch)
  EventRecord,        // cudaEventRecord on the compute stream
  StreamWaitEvent,    // cudaStreamWaitEvent of the compute stream on one recorded event
  StreamWaitStream,   // meshtrain's streamWaitStream: compute waits for comm (record + wait, one reused event)
  EventCreateDestroy, // a disable-timing event made and destroyed (what streamWaitStream did per call)
  FuncSetAttribute,   // cudaFuncSetAttribute(MaxDynamicSharedMemorySize) on the empty kernel
  GetDevice,          // cudaGetDevice
  UseDevice,          // meshtrain's cudaUseDevice (per-thread cache)
  GetLastError,       // cudaGetLastError
  StreamQuery,        // cudaStreamQuery of the compute stream
};

// The loop named `name` (e.g. "launch", "eventRecord"); throws naming the known ones.
HostLoop hostLoopByName(const std::string& name);
double cudaHostLoop(int dev, HostLoop loop, int64_t n);

}  // namespace mt
