// Internal to the emulated device (test tool): stream capture and graphs (graph.cc), as the
// runtime (runtime.cc) and the launcher (kernel.h) use them. A capturing stream records its work
// as nodes (run/drop callbacks over a by-value context); cudaGraphLaunch runs them in order.
#pragma once
#include <cstdint>
#include <string>
#include "cudart.h"

namespace mt {
namespace emu {

struct LaunchInfo;

// True while any stream captures: only then does a launch ask about its stream.
bool anyCapture();
// recordNode for an MT_LAUNCH on li.stream, the node named after the kernel.
cudaStreamCaptureStatus recordLaunch(const LaunchInfo& li, void (*run)(void*), void* ctx, void (*drop)(void*));
// At replay: beginLaunch's pointer checks for a recorded kernel (uncounted); a bad pointer is a
// pending cudaErrorIllegalAddress naming the graph node. False when it must not run.
bool replayLaunchOk(const LaunchInfo& li, const void* const* ptrs, int nPtrs);
// Whether `s` captures: cudaStreamCaptureStatusNone/Active/Invalidated. Cheap while nothing captures.
cudaStreamCaptureStatus captureStatus(cudaStream_t s);
// The id of the capture `s` is in (0: none), and whether capture `id` is still open.
uint64_t captureIdOf(cudaStream_t s);
bool captureOpen(uint64_t id);
// Invalidates the capture on `s` (or capture `id`): cudaStreamEndCapture then returns
// cudaErrorStreamCaptureInvalidated and no graph, its message naming `why`. False if none is open.
bool invalidateCapture(cudaStream_t s, const std::string& why);
bool invalidateCaptureId(uint64_t id, const std::string& why);
// Invalidates every open capture of device `dev`; how many there were.
int invalidateDeviceCaptures(int dev, const std::string& why);
// Appends a node to the capture on `s`, which then owns ctx (Active). An invalidated capture drops
// ctx at once and sets cudaErrorStreamCaptureInvalidated as the last error (Invalidated). None:
// `s` does not capture, ctx stays the caller's (run the work now).
cudaStreamCaptureStatus recordNode(cudaStream_t s, std::string what, void (*run)(void*), void* ctx, void (*drop)(void*));
// While cudaGraphLaunch replays: "graph G node i of n (what)", for error messages; else empty.
std::string replayWhere();
bool replaying();

// What graph.cc needs from runtime.cc: whether device `dev` has an execution error pending, and a
// guard-byte scan after a reference-library node (damage becomes a pending error naming `who`).
bool pendingOn(int dev);
void checkGuardsAfter(const std::string& who);

}  // namespace emu
}  // namespace mt
