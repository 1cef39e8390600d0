// Guard macros: user errors become JS exceptions, never exit() or abort().
#pragma once
#include <napi.h>
#include <sstream>
#include <string>

namespace mt {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Args>
std::string cat(Args&&... args) {
  std::ostringstream s;
  (s << ... << args);
  return s.str();
}

}  // namespace mt

// Throws a C++ exception that the N-API wrapper turns into a JS Error.
#define MT_CHECK(cond, ...)                                  \
  do {                                                       \
    if (!(cond)) throw ::mt::Error(::mt::cat(__VA_ARGS__));  \
  } while (0)

namespace mt {

// Turns any C++ exception (ours, oneDNN's, bad_alloc) into a JS Error.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(info.Env(), "out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

}  // namespace mt

#define MT_EXPORT(EXPORTS, NAME, FN) \
  (EXPORTS).Set(NAME, Napi::Function::New((EXPORTS).Env(), ::mt::guarded<FN>, NAME))
