// The emulated runtime's call counters (api_counts.h) and their binding,
// `native.cudaEmuApiCounts(reset?)` -> { [cudart function]: calls } (emulation build only).
#ifdef MESHTRAIN_CUDA_EMU
#include "cuda/emu/api_counts.h"

#include <napi.h>
#include <cstring>
#include <deque>
#include <mutex>
#include "util/check.h"

namespace mt {
namespace emu {
namespace {

struct Registry {
  std::mutex mu;
  // A deque keeps each counter's address while more names register.
  std::deque<std::pair<std::string, std::atomic<uint64_t>>> counters;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: counters are touched until exit
  return *r;
}

}  // namespace

std::atomic<uint64_t>& apiCounter(const char* name) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& c : r.counters)
    if (c.first == name) return c.second;  // MT_EMU_COUNT_AS may name one site's counter twice
  auto& c = r.counters.emplace_back(std::piecewise_construct, std::forward_as_tuple(name), std::forward_as_tuple(0));
  return c.second;
}

std::vector<std::pair<std::string, uint64_t>> apiCounts() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::pair<std::string, uint64_t>> out;
  for (auto& c : r.counters) out.emplace_back(c.first, c.second.load(std::memory_order_relaxed));
  return out;
}

void resetApiCounts() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& c : r.counters) c.second.store(0, std::memory_order_relaxed);
}

}  // namespace emu

namespace {

// cudaEmuApiCounts(reset?: boolean) -> { name: calls } since the last reset; reset zeroes them after reading.
Napi::Value EmuApiCounts(const Napi::CallbackInfo& info) {
  const bool reset = info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
  auto o = Napi::Object::New(info.Env());
  for (const auto& [name, n] : emu::apiCounts()) o.Set(name, Napi::Number::New(info.Env(), double(n)));
  if (reset) emu::resetApiCounts();
  return o;
}

}  // namespace

void registerCudaEmuApiCounts(Napi::Object exports) { MT_EXPORT(exports, "cudaEmuApiCounts", EmuApiCounts); }

}  // namespace mt
#endif
