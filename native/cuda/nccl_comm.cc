// NCCL communicators (see nccl_comm.h): operations, the watchdog and close; creation is in
// nccl_create.cc. Ordering: a collective's communication stream first waits for the compute
// stream (its inputs are written there), and its completion is an event on the communication
// stream; waiting makes the compute stream wait for that event, so later kernels, reads and reuse
// of freed blocks (the allocator relies on compute-stream order) come after it. The watchdog polls
// each communicator's pending events and ncclCommGetAsyncError.
#include "cuda/nccl_comm.h"
#ifdef MESHTRAIN_NCCL
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>
#include "cuda/device.h"
#include "cuda/device_memory.h"
#include "cuda/host_sync.h"
#include "cuda/libraries.h"
#include "cuda/nccl_state.h"
#include "cuda/runtime.h"
#include "tensor/storage.h"

namespace mt {
namespace ncclx {
namespace {

// Leaked on purpose: the detached watchdog may still read it while static destructors run at exit.
struct Registry {
  std::mutex mu;
  std::unordered_map<int64_t, std::shared_ptr<Comm>> comms;
  int64_t next = 1;
  bool watchdogStarted = false;
  // Set at exit, before the CUDA runtime's own teardown: the watchdog then stops touching CUDA.
  std::atomic<bool> stop{false};
  std::atomic<bool> stopped{false};
  // Aborts the watchdog started on threads of their own, not yet returned (waited for at exit).
  std::atomic<int> aborting{0};
};
Registry& reg() {
  static Registry* r = new Registry();
  return *r;
}

// Completed operations leave the list (their events die with the last reference); waiting for
// one that left is a no-op: it is done, so nothing later needs ordering after it.
void retire(Comm& c) {  // under c.mu
  auto& v = c.ops;
  for (size_t i = 0; i < v.size();) {
    if (v[i]->complete) {
      v[i] = v.back();
      v.pop_back();
    } else {
      i++;
    }
  }
}

// ncclCommAbort of a communicator the watchdog failed, on a thread of its own. The abort
// synchronizes NCCL's streams and frees device memory (NCCL's commReclaim), so behind a busy
// compute stream it returns only when the device drains: seconds. Aborting on the watchdog's
// thread stopped it timing the other communicators meanwhile (the H200 runs of stops 14 and 19:
// a second group's operation, held past its timeout, raised nothing for 8 s). close() waits for
// the abort through c.life; asyncState() does not (the communicator has failed).
void abortLater(std::shared_ptr<Comm> c) {
  reg().aborting.fetch_add(1);
  std::thread([c = std::move(c)] {
    {
      std::lock_guard<std::mutex> alive(c->life);
      abortNow(*c, "meshtrain nccl watchdog");
    }
    reg().aborting.fetch_sub(1);
  }).detach();
}

// One pass over a communicator: completed events, timeouts, asynchronous errors. A communicator
// whose lock is held (an abort in progress, close) is skipped this pass, never waited for.
void inspect(const std::shared_ptr<Comm>& cp) {
  Comm& c = *cp;
  if (c.failed.load() || c.closed.load()) return;
  std::unique_lock<std::mutex> alive(c.life, std::try_to_lock);
  if (!alive.owns_lock()) return;
  if (!c.ready.load() || c.failed.load() || c.closed.load()) return;
  cudaSetDevice(c.dev);
  cudaForgetCurrentDevice();  // cudaUseDevice asks the runtime next time
  std::string failure;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    const auto now = Clock::now();
    const int64_t limit = c.timeoutMs.load();
    for (auto& p : c.ops) {
      if (p->complete) continue;
      if (p->recorded) {
        cudaError_t q = cudaEventQuery(p->done);
        if (q == cudaSuccess) {
          p->complete = true;
          continue;
        }
        if (q != cudaErrorNotReady) {
          cudaGetLastError();
          failure = cat(p->what, " on ", c.where(), " failed on the device: CUDA error ", int(q), " (", cudaGetErrorName(q), ")");
          break;
        }
      }
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - p->start).count();
      if (ms > limit) {
        failure = cat(p->what, " on ", c.where(), " timed out after ", limit,
                      " ms (a peer died, is stuck, or did not call the same operation); the communicator was aborted");
        break;
      }
    }
    retire(c);
  }
  if (failure.empty()) {
    int async = nc::kSuccess;
    int rc = api().commGetAsyncError(c.comm, &async);
    if (rc != nc::kSuccess) async = rc;
    if (async != nc::kSuccess && async != nc::kInProgress) {
      failure = cat("NCCL reported an asynchronous error on ", c.where(), ": ", ncclMessage(async),
                    " (a peer failed or the connection broke); the communicator was aborted");
    }
  }
  if (!failure.empty() && recordFailure(c, failure)) abortLater(cp);
}

void watchdog() {
  while (!reg().stop.load()) {
    std::vector<std::shared_ptr<Comm>> live;
    {
      std::lock_guard<std::mutex> lock(reg().mu);
      for (auto& [h, c] : reg().comms) live.push_back(c);
    }
    for (auto& c : live)
      if (!reg().stop.load()) inspect(c);
    live.clear();  // the last references may destroy events: not after stop
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  reg().stopped.store(true);
}

// Registered after the CUDA runtime initialized, so it runs before the runtime's exit handler.
// An abort still running gets a bounded wait: it ends once the device is idle.
void stopWatchdog() {
  reg().stop.store(true);
  for (int i = 0; i < 100 && !reg().stopped.load(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  for (int i = 0; i < 1000 && reg().aborting.load() > 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

int ncclType(int dtype, const std::string& what) {
  switch (dtype) {
    case 0: return nc::kFloat32;
    case 1: return nc::kFloat64;
    case 2: return nc::kBfloat16;
    case 3: return nc::kFloat16;
    case 4: return nc::kInt32;
    case 5: return nc::kInt64;
  }
  throw Error(cat("nccl: ", what, ": unknown dtype code ", dtype));
}

int ncclRed(int red, const std::string& what) {
  switch (red) {
    case 0: return nc::kSum;
    case 1: return nc::kAvg;
    case 2: return nc::kMax;
    case 3: return nc::kMin;
  }
  throw Error(cat("nccl: ", what, ": unknown reduce op code ", red));
}

// The NCCL call of one operation, on stream `s`; returns its ncclResult_t.
int enqueue(const NcclApi& a, Comm& c, const NcclOp& op, cudaStream_t s) {
  const int dt = ncclType(op.dtype, op.what), red = ncclRed(op.red, op.what);
  const size_t n = size_t(op.count);
  switch (op.kind) {
    case kNcclAllReduce: return a.allReduce(op.in, op.out, n, dt, red, c.comm, s);
    // Non-root ranks pass no receive buffer, so their tensors stay unchanged.
    case kNcclReduce: return a.reduce(op.in, c.rank == op.root ? op.out : nullptr, n, dt, red, op.root, c.comm, s);
    case kNcclReduceScatter: return a.reduceScatter(op.in, op.out, n, dt, red, c.comm, s);
    case kNcclAllGather: return a.allGather(op.in, op.out, n, dt, c.comm, s);
    case kNcclBroadcast: return a.broadcast(op.in, op.out, n, dt, op.root, c.comm, s);
    case kNcclBarrier: {
      float* one = static_cast<float*>(storageAt(c.scratch).ptr);
      return a.allReduce(one, one, 1, nc::kFloat32, nc::kSum, c.comm, s);
    }
    case kNcclSend:
    case kNcclRecv: {
      int rc = a.groupStart();
      if (rc != nc::kSuccess) return rc;
      rc = op.kind == kNcclSend ? a.send(op.in, n, dt, op.root, c.comm, s) : a.recv(op.out, n, dt, op.root, c.comm, s);
      int end = a.groupEnd();
      return rc != nc::kSuccess ? rc : end;
    }
  }
  throw Error(cat("nccl: unknown operation code ", op.kind));
}

// The pending operation `id`, or null once it completed and left the list.
std::shared_ptr<Pending> find(Comm& c, int64_t id) {
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto& p : c.ops)
    if (p->id == id) return p;
  MT_CHECK(id > 0 && id < c.nextOp, "nccl: operation ", id, " on ", c.where(), " was never issued");
  return nullptr;
}

// Blocks the host until `p` completes; the watchdog turns a stuck operation into a failure.
void hostWait(Comm& c, Pending& p) {
  countHostSync(c.dev);
  int sleepUs = 2;
  for (;;) {
    if (p.doomed.load()) throwFailed(c, p.what);
    cudaError_t q = cudaEventQuery(p.done);
    if (q == cudaSuccess) return;
    if (c.failed.load()) throwFailed(c, p.what);
    if (q != cudaErrorNotReady) cudaCheck(q, cat("nccl: ", p.what, " on ", c.where()).c_str());
    std::this_thread::sleep_for(std::chrono::microseconds(sleepUs));
    sleepUs = sleepUs < 1000 ? sleepUs * 2 : 1000;
  }
}

// A non-blocking communicator's call returned ncclInProgress: NCCL finishes it on a thread of its
// own, and until ncclCommGetAsyncError says ncclSuccess nothing else may be called on the
// communicator, nor may the completion event be recorded (the kernel is not queued yet). The
// watchdog times the operation out like a stuck enqueue (it is listed, not yet recorded).
void settle(Comm& c, Pending& p) {
  int sleepUs = 1;
  for (;;) {
    if (c.failed.load()) throwFailed(c, p.what);
    const int state = asyncState(c);
    if (state == nc::kSuccess) return;
    if (state == kGone) throwFailed(c, p.what);
    if (state != nc::kInProgress) {
      {
        std::lock_guard<std::mutex> alive(c.life);
        failComm(c, cat(p.what, " on ", c.where(), " failed: ", ncclMessage(state), "; the communicator was aborted"));
      }
      throwFailed(c, p.what);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(sleepUs));
    sleepUs = sleepUs < 200 ? sleepUs * 2 : 200;
  }
}

// A usable communicator for an operation: built (ncclCommPoll said so) and not mid-split.
std::shared_ptr<Comm> usable(int64_t h, const std::string& what) {
  auto c = get(h);
  MT_CHECK(c->ready.load(), "nccl: ", what, " on ", c->where(), ": the communicator is still being created");
  if (c->failed.load()) throwFailed(*c, what);
  MT_CHECK(!c->splitting.load(), "nccl: ", what, " on ", c->where(),
           ": a split of this communicator is in progress (await it first; NCCL allows no other call until it completes)");
  return c;
}

void streamWait(Comm& c, Pending& p) {
  cudaCheck(cudaStreamWaitEvent(computeStream(c.dev), p.done, 0), "nccl: cudaStreamWaitEvent (compute waits for communication)");
}

}  // namespace

const NcclApi& api() {
  std::string why;
  const NcclApi* a = nccl(&why);
  MT_CHECK(a, "nccl: ", why);
  return *a;
}

std::string ncclMessage(int rc) {
  const NcclApi* a = nccl(nullptr);
  return cat("NCCL error ", rc, " (", a && a->getErrorString ? a->getErrorString(rc) : "?", ")");
}

std::shared_ptr<Comm> get(int64_t h) {
  std::lock_guard<std::mutex> lock(reg().mu);
  auto it = reg().comms.find(h);
  MT_CHECK(it != reg().comms.end(), "nccl: communicator ", h, " does not exist (destroyed?)");
  return it->second;
}

bool recordFailure(Comm& c, const std::string& msg) {  // under c.life
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.failed.load()) return false;
    c.error = msg;
    for (auto& p : c.ops)
      if (!p->complete) p->doomed.store(true);
    c.failed.store(true);
  }
  std::fprintf(stderr, "meshtrain nccl watchdog: %s\n", msg.c_str());
  return true;
}

void abortNow(Comm& c, const char* who) {  // under c.life
  if (c.aborted.exchange(true) || !c.comm) return;
  cudaSetDevice(c.dev);
  cudaForgetCurrentDevice();  // cudaUseDevice asks the runtime next time
  int rc = api().commAbort(c.comm);
  if (rc != nc::kSuccess) std::fprintf(stderr, "%s: ncclCommAbort on %s: %s\n", who, c.where().c_str(), ncclMessage(rc).c_str());
}

void failComm(Comm& c, const std::string& msg) {  // under c.life
  if (recordFailure(c, msg)) abortNow(c, "meshtrain nccl watchdog");
}

[[noreturn]] void throwFailed(Comm& c, const std::string& what) {
  std::lock_guard<std::mutex> lock(c.mu);
  throw Error(cat("nccl: ", what, " on ", c.where(), " cannot complete: ", c.error));
}

int64_t add(std::shared_ptr<Comm> c) {
  std::lock_guard<std::mutex> lock(reg().mu);
  if (!reg().watchdogStarted) {
    std::thread(watchdog).detach();
    std::atexit(stopWatchdog);
    reg().watchdogStarted = true;
  }
  int64_t h = reg().next++;
  reg().comms[h] = std::move(c);
  return h;
}

std::shared_ptr<Comm> make(int dev, int size, int rank, const std::string& name, int64_t timeoutMs, bool blockingWait) {
  auto c = std::make_shared<Comm>();
  c->dev = dev;
  c->size = size;
  c->rank = rank;
  c->name = name;
  c->timeoutMs.store(timeoutMs);
  c->blockingWait = blockingWait;
  c->scratch = allocStorage(sizeof(float), Tag::Comm, dev + 1, true);
  return c;
}

int asyncState(Comm& c) {
  // A failed communicator is gone to its callers (they throw its failure): never wait for c.life
  // then, since the watchdog's abort thread may hold it for seconds (behind a busy device, or the
  // stand-in's 779 trap). Waiting there made a caller polling settle() fail only once the abort
  // returned (cuda_nccl_emu, once under load: 2.5 s for a 500 ms timeout).
  std::unique_lock<std::mutex> alive(c.life, std::defer_lock);
  while (!alive.try_lock()) {
    if (c.failed.load()) return kGone;
    std::this_thread::yield();
  }
  if (c.aborted.load() || c.failed.load()) return kGone;
  int state = nc::kSuccess;
  int rc = api().commGetAsyncError(c.comm, &state);
  return rc != nc::kSuccess ? rc : state;
}

void discard(int64_t h, Comm& c) {
  {
    std::lock_guard<std::mutex> lock(reg().mu);
    reg().comms.erase(h);
  }
  {
    std::lock_guard<std::mutex> alive(c.life);
    c.closed.store(true);
    abortNow(c, "meshtrain nccl");
  }
  freeStorage(c.scratch);
  c.scratch = 0;
}

}  // namespace ncclx

using namespace ncclx;

std::string ncclUnavailableReason() {
  std::string why, lib;
  int n = cudaDeviceCountOrZero(&why);
  std::string device = n > 0 ? "" : cat("no CUDA device (", why.empty() ? "the driver reports none" : why, ")");
  if (nccl(&lib)) lib.clear();
  // Both, when both are missing: the user has two things to fix.
  return device.empty() ? lib : lib.empty() ? device : cat(device, "; ", lib);
}

std::string ncclNewUniqueId() {
  nc::UniqueId id;
  std::memset(&id, 0, sizeof id);
  int rc = api().getUniqueId(&id);
  MT_CHECK(rc == nc::kSuccess, "nccl: ncclGetUniqueId failed: ", ncclMessage(rc));
  return std::string(id.internal, sizeof id.internal);
}

int64_t ncclCommIssue(int64_t h, const NcclOp& op) {
  const NcclApi& a = api();
  auto c = usable(h, op.what);
  if (c->failed.load()) throwFailed(*c, op.what);
  cudaUseDevice(c->dev);
  cudaStream_t comm = commStream(c->dev), compute = computeStream(c->dev);
  streamWaitStream(c->dev, comm, compute);  // the inputs were written on the compute stream
  auto p = std::make_shared<Pending>();
  p->what = op.what;
  p->hostWait = op.kind == kNcclBarrier;
  p->start = Clock::now();
  cudaCheck(cudaEventCreateWithFlags(&p->done, cudaEventDisableTiming), "nccl: cudaEventCreate");
  {
    std::lock_guard<std::mutex> lock(c->mu);
    p->id = c->nextOp++;
    c->ops.push_back(p);  // from here the watchdog times out even a stuck enqueue
  }
  int rc = op.count == 0 && op.kind != kNcclBarrier ? nc::kSuccess : enqueue(a, *c, op, comm);
  if (rc == nc::kInProgress && c->nonBlocking) {
    try {
      settle(*c, *p);
      rc = nc::kSuccess;
    } catch (...) {
      std::lock_guard<std::mutex> lock(c->mu);
      p->complete = true;
      throw;
    }
  }
  if (rc != nc::kSuccess) {
    {
      std::lock_guard<std::mutex> lock(c->mu);
      p->complete = true;
    }
    if (c->failed.load()) throwFailed(*c, op.what);
    throw Error(cat("nccl: ", op.what, " on ", c->where(), " failed: ", ncclMessage(rc)));
  }
  cudaError_t e = cudaEventRecord(p->done, comm);
  {
    std::lock_guard<std::mutex> lock(c->mu);
    p->recorded = e == cudaSuccess;
    if (!p->recorded) p->complete = true;
  }
  cudaCheck(e, "nccl: cudaEventRecord (completion of a collective)");
  if (op.async) return p->id;
  if (c->blockingWait || p->hostWait) hostWait(*c, *p);
  streamWait(*c, *p);
  return 0;
}

bool ncclCommTest(int64_t h, int64_t id) {
  auto c = get(h);
  if (c->failed.load()) return true;  // wait() throws the failure
  auto p = find(*c, id);
  if (!p || p->doomed.load()) return true;
  cudaError_t q = cudaEventQuery(p->done);
  if (q == cudaErrorNotReady) return false;
  if (q != cudaSuccess) cudaGetLastError();
  return true;
}

void ncclCommWait(int64_t h, int64_t id) {
  auto c = get(h);
  auto p = find(*c, id);
  if (!p) return;
  if (c->blockingWait || p->hostWait) {
    hostWait(*c, *p);
  } else if (p->doomed.load() || (c->failed.load() && cudaEventQuery(p->done) != cudaSuccess)) {
    throwFailed(*c, p->what);
  }
  streamWait(*c, *p);
}

void ncclCommSetTimeout(int64_t h, int64_t ms) {
  MT_CHECK(ms > 0, "nccl: the timeout must be positive, got ", ms);
  get(h)->timeoutMs.store(ms);
}

int ncclCommDevice(int64_t h) { return get(h)->dev; }
int ncclCommSize(int64_t h) { return get(h)->size; }

namespace {

// ncclCommFinalize of a non-blocking communicator returned ncclInProgress: its state says when
// the flush is done. Only close() touches `c` now (closed, aborted set), so no lock is needed.
int finalizeWait(Comm& c) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(c.timeoutMs.load());
  int sleepUs = 10;
  for (;;) {
    int state = nc::kSuccess;
    int rc = api().commGetAsyncError(c.comm, &state);
    if (rc != nc::kSuccess) return rc;
    if (state != nc::kInProgress) return state;
    if (Clock::now() >= deadline) return nc::kInProgress;
    std::this_thread::sleep_for(std::chrono::microseconds(sleepUs));
    sleepUs = sleepUs < 2000 ? sleepUs * 2 : 2000;
  }
}

}  // namespace

void ncclCommClose(int64_t h) {
  auto c = get(h);
  cudaUseDevice(c->dev);
  if (!c->ready.load()) {  // creation abandoned half-way (an exception between open and poll)
    discard(h, *c);
    return;
  }
  // Outstanding work first: a blocking ncclCommDestroy would wait for a stuck kernel forever,
  // while this wait ends at the timeout (the watchdog aborts).
  std::vector<std::shared_ptr<Pending>> left;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    for (auto& p : c->ops)
      if (p->recorded && !p->complete) left.push_back(p);
  }
  for (auto& p : left) {
    try {
      hostWait(*c, *p);
    } catch (const std::exception&) {
      break;  // failed: the watchdog reported it and aborted the communicator
    }
  }
  std::string firstError;
  {
    std::lock_guard<std::mutex> lock(reg().mu);
    reg().comms.erase(h);
  }
  // After this lock the watchdog is not inside inspect() for `c` and will not enter it again;
  // `aborted` says whether it already tore the communicator down.
  std::lock_guard<std::mutex> alive(c->life);
  c->closed.store(true);
  if (c->failed.load()) {
    // Failed (reported already) but the watchdog's abort thread has not run yet: abort here, since
    // finalizing would flush the stuck operation.
    abortNow(*c, "meshtrain nccl");
  } else if (!c->aborted.exchange(true)) {
    const NcclApi& a = api();
    int rc = a.commFinalize ? a.commFinalize(c->comm) : nc::kSuccess;
    if (rc == nc::kInProgress && c->nonBlocking) rc = finalizeWait(*c);
    if (rc == nc::kInProgress) {
      // A peer never finalized: destroying would wait for it, aborting does not.
      firstError = cat("nccl: ncclCommFinalize of ", c->where(), " did not complete within ", c->timeoutMs.load(),
                       " ms (a peer is stuck or gone); the communicator was aborted");
      a.commAbort(c->comm);
    } else if (rc != nc::kSuccess) {
      firstError = cat("nccl: ncclCommFinalize of ", c->where(), " failed: ", ncclMessage(rc), "; the communicator was aborted");
      a.commAbort(c->comm);
    } else {
      int rc2 = a.commDestroy(c->comm);
      if (rc2 != nc::kSuccess) firstError = cat("nccl: destroying ", c->where(), ": ", ncclMessage(rc2));
    }
  }
  {
    std::lock_guard<std::mutex> lock(c->mu);
    c->ops.clear();
  }
  streamWaitStream(c->dev, computeStream(c->dev), commStream(c->dev));  // the scratch is reused on compute
  freeStorage(c->scratch);
  MT_CHECK(firstError.empty(), firstError);
}

}  // namespace mt
#endif
