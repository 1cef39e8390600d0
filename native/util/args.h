// Reading N-API arguments; TypeScript validates them first, these checks catch binding bugs.
#pragma once
#include <napi.h>
#include <cstdint>
#include <vector>
#include "util/check.h"

namespace mt {

inline int64_t argInt(const Napi::CallbackInfo& info, size_t i) {
  MT_CHECK(info.Length() > i && info[i].IsNumber(), "argument ", i, " must be a number");
  return info[i].As<Napi::Number>().Int64Value();
}

inline double argNum(const Napi::CallbackInfo& info, size_t i) {
  MT_CHECK(info.Length() > i && info[i].IsNumber(), "argument ", i, " must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

inline bool argBool(const Napi::CallbackInfo& info, size_t i) {
  MT_CHECK(info.Length() > i && info[i].IsBoolean(), "argument ", i, " must be a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

// A JS array of integers (shapes, strides).
inline std::vector<int64_t> argInts(const Napi::CallbackInfo& info, size_t i) {
  MT_CHECK(info.Length() > i && info[i].IsArray(), "argument ", i, " must be an array");
  auto a = info[i].As<Napi::Array>();
  std::vector<int64_t> v(a.Length());
  for (uint32_t k = 0; k < a.Length(); k++) v[k] = a.Get(k).As<Napi::Number>().Int64Value();
  return v;
}

}  // namespace mt
