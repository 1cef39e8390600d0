// nccl.{status, uniqueId, hasInitConfig, open, split, poll, abandon, op, test, wait, setTimeout,
// close, device, busId, spin}: the
// NCCL communicator for src/dist/nccl.ts. Every build has nccl.status(), which says why NCCL
// cannot be used here; the rest exist in CUDA builds only.
#include "cuda/bindings_nccl.h"
#include "cuda/nccl_comm.h"
#include "tensor/storage.h"
#include "util/args.h"
#ifdef MESHTRAIN_NCCL
#include "cuda/libraries.h"
#include "cuda/runtime.h"
#ifndef MESHTRAIN_CUDA_EMU
#include "cuda/spin.h"
#endif
#endif

namespace mt {
namespace {

std::string argStr(const Napi::CallbackInfo& info, size_t i) {
  MT_CHECK(info.Length() > i && info[i].IsString(), "argument ", i, " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

// status() -> "" when this process can use NCCL, else what is missing.
Napi::Value Status(const Napi::CallbackInfo& info) {
#if defined(MESHTRAIN_NCCL)
  return Napi::String::New(info.Env(), ncclUnavailableReason());
#else
  return Napi::String::New(info.Env(), "this addon was built without CUDA (no nvcc at build time, or MESHTRAIN_CUDA=OFF)");
#endif
}

#ifdef MESHTRAIN_NCCL

Napi::Value UniqueId(const Napi::CallbackInfo& info) {
  std::string id = ncclNewUniqueId();
  return Napi::Buffer<char>::Copy(info.Env(), id.data(), id.size());
}

// hasInitConfig() -> whether libnccl has ncclCommInitRankConfig (NCCL >= 2.14: non-blocking creation).
Napi::Value HasInitConfig(const Napi::CallbackInfo& info) {
  std::string why;
  const NcclApi* a = nccl(&why);
  return Napi::Boolean::New(info.Env(), a && a->commInitRankConfig);
}

// open(dev, id: Uint8Array(128), size, rank, name, timeoutMs, blockingWait, nonBlocking) -> handle
// (poll() it until ready)
Napi::Value Open(const Napi::CallbackInfo& info) {
  MT_CHECK(info.Length() > 1 && info[1].IsTypedArray(), "nccl.open: argument 1 must be the unique id bytes");
  auto id = info[1].As<Napi::Uint8Array>();
  std::string bytes(reinterpret_cast<const char*>(id.Data()), id.ByteLength());
  int64_t h = ncclCommOpen(int(argInt(info, 0)), bytes, int(argInt(info, 2)), int(argInt(info, 3)), argStr(info, 4),
                           argInt(info, 5), argBool(info, 6), argBool(info, 7));
  return Napi::Number::New(info.Env(), double(h));
}

// split(parent, color >= 0, key, size, rank, name, timeoutMs) -> handle (poll() it until ready)
Napi::Value Split(const Napi::CallbackInfo& info) {
  int64_t h = ncclCommSplitOf(argInt(info, 0), int(argInt(info, 1)), int(argInt(info, 2)), int(argInt(info, 3)),
                              int(argInt(info, 4)), argStr(info, 5), argInt(info, 6));
  return Napi::Number::New(info.Env(), double(h));
}

// poll(h) -> true once the communicator is ready; throws (after aborting) when NCCL failed.
Napi::Value Poll(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), ncclCommPoll(argInt(info, 0)) == 1);
}

// abandon(h, reason) -> the error message; the communicator is aborted and forgotten.
Napi::Value Abandon(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), ncclCommAbandon(argInt(info, 0), argStr(info, 1)));
}

// A device address for `count` elements at element `off` of storage `id` (0: none), on cuda:dev.
void* tensorPtr(const std::string& what, const char* role, int64_t id, int64_t off, int64_t count, size_t item, int dev) {
  if (id == 0) return nullptr;
  const int code = storageAt(id).device;
  MT_CHECK(isCudaCode(code), "nccl: ", what, ": the ", role, " is on the CPU; NCCL works on cuda:", dev, " tensors");
  MT_CHECK(code - 1 == dev, "nccl: ", what, ": the ", role, " is on cuda:", code - 1, " but this communicator uses cuda:", dev);
  return anyDevicePtr<uint8_t>(id, off * int64_t(item), count * int64_t(item));
}

// op(h, kind, red, dtype, root, count, inId, inOff, outId, outOff, async, what) -> op id (0: sync)
Napi::Value Op(const Napi::CallbackInfo& info) {
  int64_t h = argInt(info, 0);
  NcclOp op;
  op.kind = int(argInt(info, 1));
  op.red = int(argInt(info, 2));
  op.dtype = int(argInt(info, 3));
  op.root = int(argInt(info, 4));
  op.count = argInt(info, 5);
  op.async = argBool(info, 10);
  op.what = argStr(info, 11);
  MT_CHECK(op.count >= 0, "nccl: ", op.what, ": negative count ", op.count);
  MT_CHECK(op.dtype >= 0 && op.dtype <= 5, "nccl: ", op.what, ": unknown dtype code ", op.dtype);
  const size_t item = itemsize(toDType(op.dtype));
  const int dev = ncclCommDevice(h), size = ncclCommSize(h);
  // Elements each side touches: reduceScatter reads size x count, allGather writes size x count.
  const int64_t inCount = op.kind == kNcclReduceScatter ? op.count * size : op.count;
  const int64_t outCount = op.kind == kNcclAllGather ? op.count * size : op.count;
  if (op.kind == kNcclBarrier) {
    MT_CHECK(argInt(info, 6) == 0 && argInt(info, 8) == 0, "nccl: barrier takes no tensor");
  } else {
    op.in = tensorPtr(op.what, "input", argInt(info, 6), argInt(info, 7), inCount, item, dev);
    op.out = tensorPtr(op.what, "output", argInt(info, 8), argInt(info, 9), outCount, item, dev);
    MT_CHECK(op.kind == kNcclRecv || op.in, "nccl: ", op.what, ": no input tensor");
    MT_CHECK(op.kind == kNcclSend || op.out, "nccl: ", op.what, ": no output tensor");
  }
  MT_CHECK(op.root >= 0 && op.root < size, "nccl: ", op.what, ": rank ", op.root, " is outside the group of ", size);
  return Napi::Number::New(info.Env(), double(ncclCommIssue(h, op)));
}

Napi::Value Test(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), ncclCommTest(argInt(info, 0), argInt(info, 1)));
}

Napi::Value Wait(const Napi::CallbackInfo& info) {
  ncclCommWait(argInt(info, 0), argInt(info, 1));
  return info.Env().Undefined();
}

Napi::Value SetTimeout(const Napi::CallbackInfo& info) {
  ncclCommSetTimeout(argInt(info, 0), argInt(info, 1));
  return info.Env().Undefined();
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  ncclCommClose(argInt(info, 0));
  return info.Env().Undefined();
}

Napi::Value Device(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ncclCommDevice(argInt(info, 0)));
}

// busId(dev) -> the PCI bus id of cuda:dev ("0000:3b:00.0"): tells GPUs apart across ranks,
// whatever CUDA_VISIBLE_DEVICES renumbered. The emulator has no bus: "emu:<dev>".
Napi::Value BusId(const Napi::CallbackInfo& info) {
#ifdef MESHTRAIN_CUDA_EMU
  return Napi::String::New(info.Env(), cat("emu:", argInt(info, 0)));
#else
  char id[32] = {0};
  cudaCheck(cudaDeviceGetPCIBusId(id, sizeof id, int(argInt(info, 0))), "nccl: cudaDeviceGetPCIBusId");
  return Napi::String::New(info.Env(), id);
#endif
}

#ifndef MESHTRAIN_CUDA_EMU
// spin(dev, microseconds): keeps the compute stream busy (tests of ordering and timeouts).
Napi::Value Spin(const Napi::CallbackInfo& info) {
  cudaSpin(int(argInt(info, 0)), argNum(info, 1));
  return info.Env().Undefined();
}
#endif

#endif

}  // namespace

void registerNccl(Napi::Env env, Napi::Object exports) {
  auto o = Napi::Object::New(env);
  MT_EXPORT(o, "status", Status);
#ifdef MESHTRAIN_NCCL
  MT_EXPORT(o, "uniqueId", UniqueId);
  MT_EXPORT(o, "hasInitConfig", HasInitConfig);
  MT_EXPORT(o, "open", Open);
  MT_EXPORT(o, "split", Split);
  MT_EXPORT(o, "poll", Poll);
  MT_EXPORT(o, "abandon", Abandon);
  MT_EXPORT(o, "op", Op);
  MT_EXPORT(o, "test", Test);
  MT_EXPORT(o, "wait", Wait);
  MT_EXPORT(o, "setTimeout", SetTimeout);
  MT_EXPORT(o, "close", Close);
  MT_EXPORT(o, "device", Device);
  MT_EXPORT(o, "busId", BusId);
#ifdef MESHTRAIN_CUDA_EMU
  o.Set("emulated", true);  // tests: events always complete, no spin kernel
#else
  MT_EXPORT(o, "spin", Spin);
#endif
#endif
  exports.Set("nccl", o);
}

}  // namespace mt
