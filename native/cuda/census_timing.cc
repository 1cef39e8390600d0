// The launch census's device-time mode (census_timing.h). CUDA builds only (the emulated device
// included: its events carry host timestamps, so its times are the CPU's running our kernels).
#ifdef MESHTRAIN_CUDA
#include "cuda/census_timing.h"

#include <array>
#include <mutex>
#include <vector>
#include "cuda/census.h"
#include "cuda/host_sync.h"
#include "cuda/runtime.h"
#include "tensor/storage.h"

namespace mt {
namespace census {

bool timing = false;

namespace timer {
namespace {

// Events are created in chunks the first time a census needs them and kept: a timed step creates
// none after the first, so its host cost is two cudaEventRecord calls per op.
constexpr size_t kChunk = 512;

struct Pool {
  std::vector<cudaEvent_t> events;
  size_t used = 0;
};
struct Record {
  int dev;
  cudaEvent_t start, stop;
  double *ms, *timed;
};
struct Pending {
  bool set = false;
  int dev = 0;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr;
  double *ms = nullptr, *timed = nullptr;
};

std::mutex& mu() {
  static std::mutex m;
  return m;
}
std::array<Pool, kMaxCudaDevices>& pools() {
  static std::array<Pool, kMaxCudaDevices> p;
  return p;
}
std::vector<Record>& records() {
  static std::vector<Record> r;
  return r;
}
thread_local Pending pending;

// An unused event of `dev` (the current device); the caller holds mu().
cudaEvent_t take(int dev) {
  MT_CHECK(dev >= 0 && dev < kMaxCudaDevices, "cudaCensus timing: cuda:", dev, " is out of range");
  Pool& p = pools()[size_t(dev)];
  if (p.used == p.events.size()) {
    for (size_t i = 0; i < kChunk; i++) {
      cudaEvent_t e = nullptr;
      cudaCheck(cudaEventCreate(&e), "cudaCensus timing: cudaEventCreate");
      p.events.push_back(e);
    }
  }
  return p.events[p.used++];
}

}  // namespace

void begin(double* ms, double* timed) {
  int dev = -1;
  cudaCheck(cudaGetDevice(&dev), "cudaCensus timing: cudaGetDevice");
  cudaStream_t s = computeStream(dev);
  cudaEvent_t e;
  {
    std::lock_guard<std::mutex> lock(mu());
    e = take(dev);
  }
  cudaCheck(cudaEventRecord(e, s), "cudaCensus timing: cudaEventRecord (start)");
  pending = Pending{true, dev, s, e, ms, timed};
}

void reset() {
  std::lock_guard<std::mutex> lock(mu());
  records().clear();
  for (Pool& p : pools()) p.used = 0;
  pending = Pending{};
}

void collect() {
  std::vector<Record> rs;
  {
    std::lock_guard<std::mutex> lock(mu());
    rs.swap(records());
  }
  if (rs.empty()) return;
  int cur = -1;
  cudaCheck(cudaGetDevice(&cur), "cudaCensus timing: cudaGetDevice");
  // Every stop event of a device was recorded on its compute stream, in order: the last one done
  // means all are.
  std::array<cudaEvent_t, kMaxCudaDevices> last{};
  for (const Record& r : rs) last[size_t(r.dev)] = r.stop;
  for (int dev = 0; dev < kMaxCudaDevices; dev++) {
    if (!last[size_t(dev)]) continue;
    cudaUseDevice(dev);
    countHostSync(dev);
    cudaCheck(cudaEventSynchronize(last[size_t(dev)]),
              cat("cudaCensus timing: cudaEventSynchronize on cuda:", dev, " (a timed op or an earlier kernel failed)").c_str());
  }
  for (const Record& r : rs) {
    float ms = 0;
    cudaCheck(cudaEventElapsedTime(&ms, r.start, r.stop), "cudaCensus timing: cudaEventElapsedTime");
    *r.ms += double(ms);
    *r.timed += 1;
  }
  cudaUseDevice(cur);
}

}  // namespace timer

void done(void* stream) {
  if (!timer::pending.set) return;
  const timer::Pending p = timer::pending;
  timer::pending = timer::Pending{};
  // Queued on another stream (staging on the communication stream): counted, not timed.
  if (static_cast<cudaStream_t>(stream) != p.stream) return;
  cudaUseDevice(p.dev);
  cudaEvent_t e;
  {
    std::lock_guard<std::mutex> lock(timer::mu());
    e = timer::take(p.dev);
  }
  cudaCheck(cudaEventRecord(e, p.stream), "cudaCensus timing: cudaEventRecord (stop)");
  std::lock_guard<std::mutex> lock(timer::mu());
  timer::records().push_back(timer::Record{p.dev, p.start, e, p.ms, p.timed});
}

}  // namespace census
}  // namespace mt
#endif
