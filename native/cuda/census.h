// The launch census (docs/gpu.md, "Launch census"): while switched on, every kernel launch
// (MT_LAUNCH), library call (cuBLASLt, cuDNN, CUB) and runtime copy or memset is counted by call
// site, with the bytes of its operands where the caller knows them. Off, each site costs one
// predictable branch on `census::on`. Plain C++ (no CUDA types): included by .cu and .cc files.
// Timed (census_timing.cc), each device op on a compute stream also gets a start/stop event pair.
#pragma once
#include <string>

namespace mt {
namespace census {

extern bool on;
// Device-time mode: set with `on` by cudaCensus('start', true); off, MT_CENSUS_DONE is one branch.
extern bool timing;

// A kernel launch of `threads` threads in all, at file:line. The label and bytes of a pending
// describe() on this thread, if any, go with it.
void launch(const char* kernel, const char* file, int line, double threads);
// Labels the next launch on this thread (a copy's dtypes, a pack before a matmul) and its bytes.
void describe(const std::string& label, double bytes);
// A library call or runtime operation: kind "library", "memcpy", "memset", "graph" (a CUDA graph's
// replay: one host call for all its nodes) or "sync".
void call(const char* kind, const std::string& name, const char* file, int line, double bytes);
// Right after the op counted last on this thread was queued on `stream` (a cudaStream_t): records
// its stop event when it was timed on that stream (census_timing.cc).
void done(void* stream);

}  // namespace census
}  // namespace mt

// Census hooks for the call sites; the arguments are evaluated only when the census is on.
#define MT_CENSUS_CALL(kind, name, bytes) \
  do {                                                                                           \
    if (__builtin_expect(::mt::census::on, 0)) ::mt::census::call(kind, name, __FILE__, __LINE__, double(bytes)); \
  } while (0)
#define MT_CENSUS_DESCRIBE(label, bytes) \
  do {                                                                         \
    if (__builtin_expect(::mt::census::on, 0)) ::mt::census::describe(label, double(bytes)); \
  } while (0)
// After the queueing call of a counted op (kernel launch, library call, copy), on its stream:
// closes its device-time interval when the census is timed.
#define MT_CENSUS_DONE(stream) \
  do {                                                                                 \
    if (__builtin_expect(::mt::census::timing, 0)) ::mt::census::done((void*)(stream)); \
  } while (0)
