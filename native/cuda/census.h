// The launch census (docs/gpu.md, "Launch census"): while switched on, every kernel launch
// (MT_LAUNCH), library call (cuBLASLt, cuDNN, CUB) and runtime copy or memset is counted by call
// site, with the bytes of its operands where the caller knows them. Off, each site costs one
// predictable branch on `census::on`. Plain C++ (no CUDA types): included by .cu and .cc files.
#pragma once
#include <string>

namespace mt {
namespace census {

extern bool on;

// A kernel launch of `threads` threads in all, at file:line. The label and bytes of a pending
// describe() on this thread, if any, go with it.
void launch(const char* kernel, const char* file, int line, double threads);
// Labels the next launch on this thread (a copy's dtypes, a pack before a matmul) and its bytes.
void describe(const std::string& label, double bytes);
// A library call or runtime operation: kind "library", "memcpy", "memset" or "sync".
void call(const char* kind, const std::string& name, const char* file, int line, double bytes);

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
