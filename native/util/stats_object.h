// JS objects of named numbers, the shape of the allocator statistics the bindings return
// (host block cache, device cache, pinned pool).
#pragma once
#include <napi.h>
#include <initializer_list>
#include <utility>

namespace mt {

// An object with the given fields, in this order.
inline Napi::Object numbersObject(Napi::Env env, std::initializer_list<std::pair<const char*, double>> fields) {
  auto o = Napi::Object::New(env);
  for (const auto& f : fields) o.Set(f.first, f.second);
  return o;
}

// {cachedBytes, reservedBytes, hits, misses} of a caching allocator's statistics.
template <typename Stats>
Napi::Object cacheStatsObject(Napi::Env env, const Stats& s) {
  return numbersObject(env, {{"cachedBytes", double(s.cachedBytes)},
                             {"reservedBytes", double(s.reservedBytes)},
                             {"hits", double(s.hits)},
                             {"misses", double(s.misses)}});
}

}  // namespace mt
