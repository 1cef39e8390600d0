// Reads of device bytes that the host takes later (the device-decided optimizer step's outcome,
// src/engine/decided_step.ts): `cuda.readLater` queues a copy into pinned host memory on the
// storage's compute stream, after the work that produces the bytes, and an event after it; the
// host takes the bytes when it needs them, waiting (a counted host wait, host_sync.h) only if the
// device has not got there yet. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <napi.h>
#include <cstring>
#include <unordered_map>
#include <vector>
#include "cuda/census.h"
#include "cuda/host_sync.h"
#include "cuda/operands.h"
#include "cuda/pinned_pool.h"
#include "cuda/runtime.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

// A queued read: the pinned storage the copy writes and the event recorded after it.
struct PendingRead {
  int dev;
  int64_t host;
  int64_t bytes;
  cudaEvent_t done;
};

std::unordered_map<int64_t, PendingRead>& reads() {
  static std::unordered_map<int64_t, PendingRead> r;
  return r;
}
int64_t nextToken = 1;

// Events of taken or dropped reads, per device, for the next reads: one read per training step
// would otherwise create and destroy an event every step. At most kEventsKept a device.
constexpr size_t kEventsKept = 16;
std::vector<cudaEvent_t>& freeEvents(int dev) {
  static std::vector<cudaEvent_t> e[kMaxCudaDevices];
  return e[dev];
}

cudaEvent_t takeEvent(int dev) {
  std::vector<cudaEvent_t>& pool = freeEvents(dev);
  if (!pool.empty()) {
    cudaEvent_t e = pool.back();
    pool.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  cudaCheck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "readLater: cudaEventCreateWithFlags");
  return e;
}

// Forgets the read and frees its pinned block and event (the block back to the pinned pool).
void release(int64_t token, const PendingRead& r) {
  freeStorage(r.host);
  std::vector<cudaEvent_t>& pool = freeEvents(r.dev);
  if (pool.size() < kEventsKept) pool.push_back(r.done);
  else cudaEventDestroy(r.done);
  reads().erase(token);
}

const PendingRead& readAt(const Napi::CallbackInfo& info, const char* op, int64_t* token) {
  *token = argInt(info, 0);
  auto it = reads().find(*token);
  MT_CHECK(it != reads().end(), op, ": no pending read with token ", *token, " (already taken or dropped, or never made)");
  return it->second;
}

// Whether the copy and everything queued before it finished; throws on a device error.
bool finished(const PendingRead& r, const char* op) {
  cudaUseDevice(r.dev);
  const cudaError_t q = cudaEventQuery(r.done);
  if (q == cudaErrorNotReady) {
    cudaGetLastError();  // not an error: the device has not got there yet
    return false;
  }
  cudaCheck(q, cat(op, ": the copy to the host (or work queued before it) failed").c_str());
  return true;
}

// readLater(id, byteOff, bytes) -> token: queues the copy of the storage's bytes [byteOff, byteOff
// + bytes) to pinned host memory on its device's compute stream, after the work queued there.
Napi::Value ReadLater(const Napi::CallbackInfo& info) {
  const char* op = "readLater";
  const int64_t id = argInt(info, 0), off = argInt(info, 1), bytes = argInt(info, 2);
  const int dev = devOf(op, id);
  const int64_t size = int64_t(storageAt(id).bytes);
  MT_CHECK(off >= 0 && bytes >= 0 && off + bytes <= size, op, ": bytes [", off, ", ", off + bytes,
           ") are outside storage ", id, " of ", size, " bytes");
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  cudaCheck(cudaStreamIsCapturing(s, &capture), "readLater: cudaStreamIsCapturing");
  MT_CHECK(capture == cudaStreamCaptureStatusNone, op, ": cuda:", dev,
           " is capturing a CUDA graph; a graph replays device work only, so queue reads for the host outside the "
           "captured function");
  const int64_t host = pinnedAlloc(size_t(bytes), Tag::Other, 0, false);
  MT_CHECK(host >= 0, op, ": no pinned host memory for ", bytes, " bytes");
  const int64_t token = nextToken++;
  PendingRead r{dev, host, bytes, nullptr};
  try {
    r.done = takeEvent(dev);
    MT_CENSUS_CALL("memcpy", "read later device to host", bytes);
    if (bytes > 0)
      cudaCheck(cudaMemcpyAsync(storageAt(host).ptr, static_cast<const uint8_t*>(storageAt(id).ptr) + off, size_t(bytes),
                                cudaMemcpyDeviceToHost, s),
                "readLater: cudaMemcpyAsync device to host");
    MT_CENSUS_DONE(s);
    cudaCheck(cudaEventRecord(r.done, s), "readLater: cudaEventRecord");
  } catch (...) {
    if (r.done) cudaEventDestroy(r.done);
    freeStorage(host);
    throw;
  }
  reads()[token] = r;
  return Napi::Number::New(info.Env(), double(token));
}

// readLaterTake(token) -> ArrayBuffer: the bytes, waiting for the copy only if it has not finished.
// A token is taken once.
Napi::Value ReadLaterTake(const Napi::CallbackInfo& info) {
  const char* op = "readLaterTake";
  int64_t token = 0;
  const PendingRead r = readAt(info, op, &token);
  if (!finished(r, op)) {
    countHostSync(r.dev);
    cudaCheck(cudaEventSynchronize(r.done), "readLaterTake: waiting for the copy to the host (an earlier kernel may have failed)");
  }
  auto out = Napi::ArrayBuffer::New(info.Env(), size_t(r.bytes));
  if (r.bytes > 0) std::memcpy(out.Data(), storageAt(r.host).ptr, size_t(r.bytes));
  release(token, r);
  return out;
}

// readLaterDone(token) -> boolean: whether the copy has finished (no wait).
Napi::Value ReadLaterDone(const Napi::CallbackInfo& info) {
  int64_t token = 0;
  return Napi::Boolean::New(info.Env(), finished(readAt(info, "readLaterDone", &token), "readLaterDone"));
}

// readLaterDrop(token): forgets the read; its pinned block is not handed out again before the copy
// finishes (pinned_pool.h pinnedGuard), so nothing waits here.
Napi::Value ReadLaterDrop(const Napi::CallbackInfo& info) {
  int64_t token = 0;
  const PendingRead r = readAt(info, "readLaterDrop", &token);
  cudaUseDevice(r.dev);
  const cudaError_t q = cudaEventQuery(r.done);
  if (q == cudaErrorNotReady) cudaGetLastError();
  if (q != cudaSuccess) pinnedGuard(r.host, r.dev);
  release(token, r);
  if (q != cudaErrorNotReady) cudaCheck(q, "readLaterDrop: the copy to the host (or work queued before it) failed");
  return info.Env().Undefined();
}

// readLaterPending() -> number of reads neither taken nor dropped (tests: nothing left behind).
Napi::Value ReadLaterPending(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(reads().size())); }

}  // namespace

void registerCudaReadLater(Napi::Object cuda) {
  MT_EXPORT(cuda, "readLater", ReadLater);
  MT_EXPORT(cuda, "readLaterTake", ReadLaterTake);
  MT_EXPORT(cuda, "readLaterDone", ReadLaterDone);
  MT_EXPORT(cuda, "readLaterDrop", ReadLaterDrop);
  MT_EXPORT(cuda, "readLaterPending", ReadLaterPending);
}

}  // namespace mt
#endif
