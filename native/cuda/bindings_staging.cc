// Bindings of the pinned host pool and the staging copies (pinned_pool.h), present in every
// build: without CUDA pinnedAlloc answers -1 and stageCopy is a host memcpy.
#include <napi.h>
#include "cuda/pinned_pool.h"
#include "util/args.h"
#include "util/stats_object.h"

namespace mt {
namespace {

// pinnedAlloc(bytes, tag, accountDevice, zero) -> storage id, or -1 when pinned memory is not available.
Napi::Value PinnedAlloc(const Napi::CallbackInfo& info) {
  int64_t bytes = argInt(info, 0), tag = argInt(info, 1), dev = argInt(info, 2);
  MT_CHECK(bytes >= 0, "pinnedAlloc: negative size ", bytes);
  MT_CHECK(tag >= 0 && tag < kNumTags, "pinnedAlloc: unknown memory tag ", tag);
  return Napi::Number::New(info.Env(), double(pinnedAlloc(size_t(bytes), static_cast<Tag>(tag), int(dev), argBool(info, 3))));
}

// pinnedPoolStats() -> {cachedBytes, reservedBytes, hits, misses}
Napi::Value PinnedStats(const Napi::CallbackInfo& info) {
  return cacheStatsObject(info.Env(), pinnedPoolStats());
}

Napi::Value PinnedEmpty(const Napi::CallbackInfo& info) {
  pinnedEmptyCache();
  return info.Env().Undefined();
}

// stageCopy(srcId, srcByteOff, dstId, dstByteOff, bytes): device <-> host on the communication stream.
Napi::Value StageCopy(const Napi::CallbackInfo& info) {
  stageCopy(argInt(info, 0), argInt(info, 1), argInt(info, 2), argInt(info, 3), argInt(info, 4));
  return info.Env().Undefined();
}

}  // namespace

void registerStaging(Napi::Object exports) {
  MT_EXPORT(exports, "pinnedAlloc", PinnedAlloc);
  MT_EXPORT(exports, "pinnedPoolStats", PinnedStats);
  MT_EXPORT(exports, "pinnedEmptyCache", PinnedEmpty);
  MT_EXPORT(exports, "stageCopy", StageCopy);
}

}  // namespace mt
