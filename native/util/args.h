// Reading N-API arguments; TypeScript validates them first, these checks catch binding bugs.
#pragma once
#include <napi.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#include "util/check.h"

namespace mt {

// The error of a missing or mistyped argument, out of line so the readers below stay small
// enough to inline into every binding.
[[noreturn]] __attribute__((noinline, cold)) inline void badArg(size_t i, const char* what) {
  throw Error(cat("argument ", i, " must be ", what));
}

// One N-API call per argument: the getters themselves refuse a value of another type (and a
// missing argument, which reads as undefined), so no napi_typeof first (bindings take ~20 each).
inline int64_t argInt(const Napi::CallbackInfo& info, size_t i) {
  int64_t v = 0;
  if (__builtin_expect(i < info.Length() && napi_get_value_int64(info.Env(), info[i], &v) == napi_ok, 1)) return v;
  badArg(i, "a number");
}

inline double argNum(const Napi::CallbackInfo& info, size_t i) {
  double v = 0;
  if (__builtin_expect(i < info.Length() && napi_get_value_double(info.Env(), info[i], &v) == napi_ok, 1)) return v;
  badArg(i, "a number");
}

inline bool argBool(const Napi::CallbackInfo& info, size_t i) {
  bool v = false;
  if (__builtin_expect(i < info.Length() && napi_get_value_bool(info.Env(), info[i], &v) == napi_ok, 1)) return v;
  badArg(i, "a boolean");
}

// napi_get_value_int64's rule for a double: truncated toward zero, saturated, NaN/infinite -> 0.
inline int64_t intOfDouble(double d) {
  if (!std::isfinite(d)) return 0;
  if (d >= 9223372036854775807.0) return INT64_MAX;
  if (d <= -9223372036854775808.0) return INT64_MIN;
  return int64_t(d);
}

// Integers from a JS array (shapes, strides) or from a Float64Array / Int32Array / BigInt64Array:
// a typed array is read in one go, where an array costs an N-API element read per entry (~0.1 us;
// 1628 of them for one adamMulti call over GPT-2's 148 parameters).
inline std::vector<int64_t> argInts(const Napi::CallbackInfo& info, size_t i) {
  MT_CHECK(info.Length() > i && (info[i].IsArray() || info[i].IsTypedArray()), "argument ", i, " must be an array");
  if (info[i].IsTypedArray()) {
    napi_typedarray_type type;
    size_t n = 0;
    void* data = nullptr;
    MT_CHECK(napi_get_typedarray_info(info.Env(), info[i], &type, &n, &data, nullptr, nullptr) == napi_ok, "argument ", i,
             ": unreadable typed array");
    std::vector<int64_t> v(n);
    switch (type) {
      case napi_float64_array:
        for (size_t k = 0; k < n; k++) v[k] = intOfDouble(static_cast<const double*>(data)[k]);
        break;
      case napi_int32_array:
        for (size_t k = 0; k < n; k++) v[k] = static_cast<const int32_t*>(data)[k];
        break;
      case napi_bigint64_array:
        if (n) std::memcpy(v.data(), data, n * sizeof(int64_t));
        break;
      default:
        MT_CHECK(false, "argument ", i, ": a typed array of integers must be a Float64Array, Int32Array or BigInt64Array");
    }
    return v;
  }
  auto a = info[i].As<Napi::Array>();
  const uint32_t n = a.Length();
  std::vector<int64_t> v(n);
  for (uint32_t k = 0; k < n; k++) v[k] = a.Get(k).As<Napi::Number>().Int64Value();
  return v;
}

}  // namespace mt
