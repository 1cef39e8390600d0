// What the reference cuDNN's two parts share (emu/cudnn.cc: the legacy convolution calls and the
// library's handle, status and capture hook; emu/cudnn_backend.cc: the graph API): status codes,
// the handle, the last error, the capture hook and 16-bit float conversions.
#pragma once
#include <cstdint>
#include <string>

namespace mtdnn {

constexpr int kSuccess = 0, kBadParam = 2000, kNotSupported = 3000, kExecutionFailed = 5000;
constexpr int kFloat = 0, kDouble = 1, kHalf = 2, kBf16 = 9;

struct Handle {
  void* stream = nullptr;
};

// The runtime's stream-capture hook: records run(ctx) on a capturing stream (returns nonzero), or
// returns 0 when the stream does not capture; a null run only asks.
using CaptureHook = int (*)(void* stream, void (*run)(void*), void* ctx, void (*drop)(void*));
extern CaptureHook captureHook;

// MESHTRAIN_CUDA_EMU_SKIP_WORK: checks, no arithmetic.
bool skipWork();
// Records msg as the status string cudnnGetErrorString returns, and returns status.
int fail(int status, const std::string& msg);

float bf16ToFloat(uint16_t b);
uint16_t floatToBf16(float f);
float f16ToFloat(uint16_t h);
uint16_t floatToF16(float f);

}  // namespace mtdnn
