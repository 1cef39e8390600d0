// The launch census's counters and its binding, cudaCensus(command). CUDA builds only (the
// emulated device included: its launches go through the same MT_LAUNCH sites).
#ifdef MESHTRAIN_CUDA
#include "cuda/census.h"

#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include "cuda/census_timing.h"
#include "util/args.h"

namespace mt {
namespace census {

bool on = false;

namespace {

struct Entry {
  double count = 0, bytes = 0, threads = 0;
  double ms = 0, timed = 0;  // device time of the timed ops (census_timing.cc)
};
// (kind, name, site, label) -> totals. Ordered, so the binding's output is stable.
using Key = std::tuple<std::string, std::string, std::string, std::string>;

std::mutex& mu() {
  static std::mutex m;
  return m;
}
std::map<Key, Entry>& table() {
  static std::map<Key, Entry> t;
  return t;
}

struct Pending {
  bool set = false;
  std::string label;
  double bytes = 0;
};
thread_local Pending pending;

// "cuda/copy.cu:62": the path below native/, whatever folder the build ran in.
std::string site(const char* file, int line) {
  const char* p = std::strstr(file, "native/");
  return std::string(p ? p + 7 : file) + ":" + std::to_string(line);
}

// Whether the entries now in the table were timed (they carry deviceMs then).
bool timedTable = false;

// Counts one op; a device op of a timed census also starts its device-time interval.
void add(const Key& k, double bytes, double threads, bool deviceOp) {
  Entry* e;
  {
    std::lock_guard<std::mutex> lock(mu());
    e = &table()[k];  // std::map nodes stay put until the next 'start' clears the table
    e->count += 1;
    e->bytes += bytes;
    e->threads += threads;
  }
  if (timing && deviceOp) timer::begin(&e->ms, &e->timed);
}

}  // namespace

void launch(const char* kernel, const char* file, int line, double threads) {
  std::string label;
  double bytes = 0;
  if (pending.set) {
    label = std::move(pending.label);
    bytes = pending.bytes;
    pending = Pending{};
  }
  add(Key{"kernel", kernel, site(file, line), label}, bytes, threads, true);
}

void describe(const std::string& label, double bytes) {
  pending.set = true;
  pending.label = label;
  pending.bytes = bytes;
}

void call(const char* kind, const std::string& name, const char* file, int line, double bytes) {
  const bool deviceOp = !std::strcmp(kind, "library") || !std::strcmp(kind, "memcpy") || !std::strcmp(kind, "memset") ||
                        !std::strcmp(kind, "graph");
  add(Key{kind, name, site(file, line), ""}, bytes, 0, deviceOp);
}

namespace {

Napi::Value entries(Napi::Env env) {
  std::lock_guard<std::mutex> lock(mu());
  auto arr = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& [k, e] : table()) {
    auto o = Napi::Object::New(env);
    o.Set("kind", std::get<0>(k));
    o.Set("name", std::get<1>(k));
    o.Set("site", std::get<2>(k));
    o.Set("label", std::get<3>(k));
    o.Set("count", e.count);
    o.Set("bytes", e.bytes);
    o.Set("threads", e.threads);
    if (timedTable) {
      o.Set("deviceMs", e.ms);
      o.Set("timed", e.timed);
    }
    arr.Set(i++, o);
  }
  return arr;
}

// The device times of the ops timed so far, into their entries (one wait per device).
void collectTimes() {
  std::lock_guard<std::mutex> lock(mu());
  timer::collect();
}

// cudaCensus('start', timed?): clears the counters and counts from now on, timing each device op
// on the compute stream when `timed` is true; 'stop': stops counting and returns the entries
// (with deviceMs and timed when timed; this waits for the device); 'read': returns them and keeps counting.
Napi::Value Census(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MT_CHECK(info.Length() >= 1 && info[0].IsString(), "cudaCensus: expects 'start', 'stop' or 'read'");
  const std::string cmd = info[0].As<Napi::String>().Utf8Value();
  if (cmd == "start") {
    MT_CHECK(info.Length() < 2 || info[1].IsBoolean() || info[1].IsUndefined(), "cudaCensus('start', timed): timed must be a boolean");
    const bool timed = info.Length() >= 2 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
    timer::reset();  // first: its records point into the table
    {
      std::lock_guard<std::mutex> lock(mu());
      table().clear();
      timedTable = timed;
    }
    pending = Pending{};
    timing = timed;
    on = true;
    return env.Undefined();
  }
  if (cmd == "stop") {
    on = false;
    timing = false;
    if (timedTable) collectTimes();
    return entries(env);
  }
  MT_CHECK(cmd == "read", "cudaCensus: unknown command '", cmd, "' (expects 'start', 'stop' or 'read')");
  if (timedTable) collectTimes();
  return entries(env);
}

}  // namespace
}  // namespace census

void registerCudaCensus(Napi::Object exports) { MT_EXPORT(exports, "cudaCensus", census::Census); }

}  // namespace mt
#endif
