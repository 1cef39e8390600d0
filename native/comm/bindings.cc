// The N-API surface of the shm communicator. TypeScript validates shapes, dtypes and ranks
// first (src/dist/); these functions resolve storage ids to pointers and hand work to the engine.
#include <sys/prctl.h>
#include <csignal>
#include <memory>
#include <vector>
#include "comm/arena.h"
#include "comm/progress.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace comm {
double benchMemcpy(size_t bytes, int threads, int iters);
}  // namespace comm

namespace {

using comm::ArenaSet;
using comm::Engine;

// Handles index these tables; entries are never reused. Deliberately leaked at exit: the env
// cleanup hook stops the threads, and static destructors must not run while they might.
std::vector<std::unique_ptr<Engine>>& engines() {
  static auto* v = new std::vector<std::unique_ptr<Engine>>();
  return *v;
}
std::vector<std::shared_ptr<ArenaSet>>& arenas() {
  static auto* v = new std::vector<std::shared_ptr<ArenaSet>>();
  return *v;
}

Engine& engineAt(int64_t h) {
  auto& v = engines();
  MT_CHECK(h >= 0 && h < int64_t(v.size()) && v[h], "shm: invalid or destroyed communicator handle ", h);
  return *v[h];
}
std::shared_ptr<ArenaSet>& arenaAt(int64_t h) {
  auto& v = arenas();
  MT_CHECK(h >= 0 && h < int64_t(v.size()) && v[h], "shm: invalid or destroyed arena handle ", h);
  return v[h];
}

std::string argStr(const Napi::CallbackInfo& info, size_t i) {
  MT_CHECK(info.Length() > i && info[i].IsString(), "argument ", i, " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}
std::vector<std::string> argStrs(const Napi::CallbackInfo& info, size_t i) {
  MT_CHECK(info.Length() > i && info[i].IsArray(), "argument ", i, " must be an array");
  auto a = info[i].As<Napi::Array>();
  std::vector<std::string> v(a.Length());
  for (uint32_t k = 0; k < a.Length(); k++) v[k] = a.Get(k).As<Napi::String>().Utf8Value();
  return v;
}

void stopAll(void*) {
  for (auto& e : engines())
    if (e) e->shutdown();
}

Napi::Value CommCreate(const Napi::CallbackInfo& info) {
  comm::CommConfig c;
  c.segName = argStr(info, 0);
  c.group = argStr(info, 1);
  c.rank = int(argInt(info, 2));
  c.size = int(argInt(info, 3));
  for (int64_t g : argInts(info, 4)) c.globalRanks.push_back(int(g));
  c.slotBytes = size_t(argInt(info, 5));
  c.p2pSlotBytes = size_t(argInt(info, 6));
  c.timeoutMs = argInt(info, 7);
  c.spinNs = argInt(info, 8);
  int64_t arena = argInt(info, 9);
  std::shared_ptr<ArenaSet> a = arena >= 0 ? arenaAt(arena) : nullptr;
  auto& v = engines();
  if (v.empty()) info.Env().AddCleanupHook(stopAll, static_cast<void*>(nullptr));
  v.push_back(std::make_unique<Engine>(std::make_unique<comm::ShmComm>(std::move(c), std::move(a))));
  return Napi::Number::New(info.Env(), double(v.size() - 1));
}

Napi::Value CommConnect(const Napi::CallbackInfo& info) {
  engineAt(argInt(info, 0)).comm().connect(argStrs(info, 1));
  return info.Env().Undefined();
}

Napi::Value CommUnlink(const Napi::CallbackInfo& info) {
  engineAt(argInt(info, 0)).comm().unlinkOwn();
  return info.Env().Undefined();
}

// (handle, kind, redop, dtype, root, count, inId, inOff, outId, outOff, async, text)
// Offsets are in elements; a zero storage id means "none".
Napi::Value CommOp(const Napi::CallbackInfo& info) {
  Engine& e = engineAt(argInt(info, 0));
  comm::OpDesc d;
  d.kind = comm::Kind(argInt(info, 1));
  d.red = comm::RedOp(argInt(info, 2));
  d.dtype = toDType(int(argInt(info, 3)));
  d.root = int(argInt(info, 4));
  d.count = argInt(info, 5);
  const int n = e.comm().config().size;
  const int64_t E = int64_t(itemsize(d.dtype));
  const int64_t inElems = d.count * (d.kind == comm::Kind::ReduceScatter ? n : 1);
  const int64_t outElems = d.count * (d.kind == comm::Kind::AllGather ? n : 1);
  int64_t inId = argInt(info, 6), outId = argInt(info, 8);
  if (inId) d.in = static_cast<char*>(bytePtr(inId, argInt(info, 7) * E, inElems * E));
  if (outId) d.out = static_cast<char*>(bytePtr(outId, argInt(info, 9) * E, outElems * E));
  bool async = argBool(info, 10);
  if (info.Length() > 11 && info[11].IsString()) d.text = info[11].As<Napi::String>().Utf8Value();
  MT_CHECK(d.root >= 0 && d.root < n, "shm: rank ", d.root, " is outside a group of ", n);
  if (async) return Napi::Number::New(info.Env(), double(e.submit(std::move(d))));
  e.run(std::move(d));
  return info.Env().Undefined();
}

Napi::Value CommWait(const Napi::CallbackInfo& info) {
  engineAt(argInt(info, 0)).wait(uint64_t(argInt(info, 1)));
  return info.Env().Undefined();
}

Napi::Value CommTest(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), engineAt(argInt(info, 0)).test(uint64_t(argInt(info, 1))));
}

Napi::Value CommSetTimeout(const Napi::CallbackInfo& info) {
  engineAt(argInt(info, 0)).comm().setTimeoutMs(argInt(info, 1));
  return info.Env().Undefined();
}

Napi::Value CommDestroy(const Napi::CallbackInfo& info) {
  int64_t h = argInt(info, 0);
  engineAt(h);
  engines()[h].reset();
  return info.Env().Undefined();
}

Napi::Value CleanupStale(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), comm::cleanupStaleSegments());
}

Napi::Value ArenaCreate(const Napi::CallbackInfo& info) {
  auto a = std::make_shared<ArenaSet>(argStr(info, 0), int(argInt(info, 1)), int(argInt(info, 2)), size_t(argInt(info, 3)));
  arenas().push_back(std::move(a));
  return Napi::Number::New(info.Env(), double(arenas().size() - 1));
}

Napi::Value ArenaConnect(const Napi::CallbackInfo& info) {
  arenaAt(argInt(info, 0))->connect(argStrs(info, 1));
  return info.Env().Undefined();
}

Napi::Value ArenaUnlink(const Napi::CallbackInfo& info) {
  arenaAt(argInt(info, 0))->unlinkOwn();
  return info.Env().Undefined();
}

struct ArenaBlock {
  std::shared_ptr<ArenaSet> arena;
  int64_t off;
};

void releaseBlock(void* ctx, void*) {
  auto* b = static_cast<ArenaBlock*>(ctx);
  b->arena->release(b->off);
  delete b;
}

// A storage in this rank's arena, or -1 when the arena is full.
Napi::Value ArenaAlloc(const Napi::CallbackInfo& info) {
  auto& a = arenaAt(argInt(info, 0));
  int64_t bytes = argInt(info, 1);
  int tag = int(argInt(info, 2));
  MT_CHECK(bytes >= 0 && tag >= 0 && tag < kNumTags, "shmArenaAlloc: bad size or tag");
  int64_t off = a->alloc(size_t(bytes));
  if (off < 0) return Napi::Number::New(info.Env(), -1);
  auto* block = new ArenaBlock{a, off};
  int64_t id;
  try {
    id = adoptStorage(a->data() + off, size_t(bytes), Tag(tag), 0, releaseBlock, block);
  } catch (...) {
    releaseBlock(block, nullptr);
    throw;
  }
  return Napi::Number::New(info.Env(), double(id));
}

Napi::Value ArenaStats(const Napi::CallbackInfo& info) {
  auto& a = arenaAt(argInt(info, 0));
  auto r = Napi::Array::New(info.Env(), 2);
  r.Set(0u, double(a->capacity()));
  r.Set(1u, double(a->used()));
  return r;
}

Napi::Value ArenaDestroy(const Napi::CallbackInfo& info) {
  int64_t h = argInt(info, 0);
  arenaAt(h);
  arenas()[h].reset();  // blocks still in use keep the mapping alive
  return info.Env().Undefined();
}

Napi::Value BenchMemcpy(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), comm::benchMemcpy(size_t(argInt(info, 0)), int(argInt(info, 1)), int(argInt(info, 2))));
}

// Ranks started by the launcher die with it instead of lingering when it is killed.
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), prctl(PR_SET_PDEATHSIG, SIGKILL) == 0);
}

}  // namespace

void registerComm(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "shmCommCreate", CommCreate);
  MT_EXPORT(exports, "shmCommConnect", CommConnect);
  MT_EXPORT(exports, "shmCommUnlink", CommUnlink);
  MT_EXPORT(exports, "shmCommOp", CommOp);
  MT_EXPORT(exports, "shmCommWait", CommWait);
  MT_EXPORT(exports, "shmCommTest", CommTest);
  MT_EXPORT(exports, "shmCommSetTimeout", CommSetTimeout);
  MT_EXPORT(exports, "shmCommDestroy", CommDestroy);
  MT_EXPORT(exports, "shmCleanupStale", CleanupStale);
  MT_EXPORT(exports, "shmArenaCreate", ArenaCreate);
  MT_EXPORT(exports, "shmArenaConnect", ArenaConnect);
  MT_EXPORT(exports, "shmArenaUnlink", ArenaUnlink);
  MT_EXPORT(exports, "shmArenaAlloc", ArenaAlloc);
  MT_EXPORT(exports, "shmArenaStats", ArenaStats);
  MT_EXPORT(exports, "shmArenaDestroy", ArenaDestroy);
  MT_EXPORT(exports, "benchMemcpy", BenchMemcpy);
  MT_EXPORT(exports, "setParentDeathSignal", SetParentDeathSignal);
}

}  // namespace mt
