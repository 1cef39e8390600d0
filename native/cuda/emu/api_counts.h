// Per-entry-point call counters of the emulated CUDA runtime (test tool): every cudart function
// runtime.cc implements counts its calls, and each MT_LAUNCH counts as cudaLaunchKernel, so a
// bench can see which runtime calls an op makes besides its launch (bench/gpu_api_census.ts).
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mt {
namespace emu {

// The counter of entry point `name`, registered on first use (stable for the process's life).
std::atomic<uint64_t>& apiCounter(const char* name);
// Every entry point called so far with its count (zero counts included after a reset).
std::vector<std::pair<std::string, uint64_t>> apiCounts();
void resetApiCounts();

}  // namespace emu
}  // namespace mt

// Counts one call of the enclosing function (its __func__: the cudart name); one relaxed add.
#define MT_EMU_COUNT()                                                                  \
  do {                                                                                  \
    static std::atomic<uint64_t>& mtEmuCounter = ::mt::emu::apiCounter(__func__);       \
    mtEmuCounter.fetch_add(1, std::memory_order_relaxed);                               \
  } while (0)
#define MT_EMU_COUNT_AS(name)                                                           \
  do {                                                                                  \
    static std::atomic<uint64_t>& mtEmuCounter = ::mt::emu::apiCounter(name);           \
    mtEmuCounter.fetch_add(1, std::memory_order_relaxed);                               \
  } while (0)
