// Device time for the launch census (census.cc; docs/gpu.md, "Launch census"): while the census
// is timed, each counted device op gets a start event before it is queued and a stop event after
// (MT_CENSUS_DONE), both on its device's compute stream, taken from a per-device pool created once
// and reused by every later census. Ops queued on another stream are counted but not timed.
// Plain C++ declarations: census.cc includes this without the CUDA runtime.
#pragma once

namespace mt {
namespace census {
namespace timer {

// Records the start event of the op counted just now on this thread, on the current device's
// compute stream; its milliseconds and one timed op are added to *ms and *timed at collect().
void begin(double* ms, double* timed);
// Forgets what a previous census recorded (its events go back to the pool).
void reset();
// Waits once per device for the last stop event recorded, then adds each op's elapsed time to its
// entry. Throws naming the CUDA call that failed (an earlier kernel's error surfaces here).
void collect();

}  // namespace timer
}  // namespace census
}  // namespace mt
