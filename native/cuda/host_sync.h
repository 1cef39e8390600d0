// A count of the times our code made the host wait for a device (a copy to the host, a stream or
// event synchronization, a scalar read such as normPow). Every such call site counts itself here,
// so the count is ours, not the driver's: the same on a GPU and on the emulated device. Tests use
// it to prove how many waits a training step costs (cudaSyncCount in TypeScript).
#pragma once
#include <cstdint>

namespace mt {

// One wait of the host for device `dev` (an ordinal; out-of-range ordinals are ignored). Throws,
// waiting for nothing, while this thread captures a CUDA graph on `dev`: the wait would end the
// capture, and what the host read there would not be read again at replay.
void countHostSync(int dev);
// The device this thread captures a CUDA graph on (cuda_graph.cc), -1 when none.
void setCapturingDevice(int dev);
// Waits counted for `dev` since the process started.
int64_t hostSyncCount(int dev);

}  // namespace mt
