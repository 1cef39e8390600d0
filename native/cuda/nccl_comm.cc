// NCCL communicators (see nccl_comm.h). Ordering: a collective's communication stream first
// waits for the compute stream (its inputs are written there), and its completion is an event on
// the communication stream; waiting makes the compute stream wait for that event, so later
// kernels, reads and reuse of freed blocks (the allocator relies on compute-stream order) come
// after it. The watchdog polls each communicator's pending events and ncclCommGetAsyncError.
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
#include "cuda/libraries.h"
#include "cuda/runtime.h"
#include "tensor/storage.h"

namespace mt {
namespace {

using Clock = std::chrono::steady_clock;

struct Pending {
  int64_t id = 0;
  std::string what;
  Clock::time_point start;
  cudaEvent_t done = nullptr;
  bool recorded = false;  // the event is queued (before that, only the enqueue call can be stuck)
  bool complete = false;   // set by the watchdog; complete operations leave the list
  // Unfinished when its communicator failed: its event may still fire (aborted kernels exit),
  // but its result is garbage, so waiting for it throws.
  std::atomic<bool> doomed{false};
  bool hostWait = false;   // barrier: wait() blocks the host until it completes
  ~Pending() {
    if (done) cudaEventDestroy(done);
  }
};

struct Comm {
  nc::Comm comm = nullptr;
  int dev = 0, rank = 0, size = 0;
  std::string name;
  std::atomic<int64_t> timeoutMs{0};
  bool blockingWait = false;
  int64_t scratch = 0;  // one f32 on the device for barriers
  int64_t nextOp = 1;
  std::mutex mu;    // ops and error, shared with the watchdog
  std::mutex life;  // held by a watchdog pass and by close(), so the handle is not destroyed under it
  std::vector<std::shared_ptr<Pending>> ops;
  std::string error;
  std::atomic<bool> failed{false};
  std::atomic<bool> aborted{false};
  std::atomic<bool> closed{false};

  std::string where() const { return cat("group '", name, "' (rank ", rank, " of ", size, ", cuda:", dev, ")"); }
};

// Leaked on purpose: the detached watchdog may still read it while static destructors run at exit.
struct Registry {
  std::mutex mu;
  std::unordered_map<int64_t, std::shared_ptr<Comm>> comms;
  int64_t next = 1;
  bool watchdogStarted = false;
  // Set at exit, before the CUDA runtime's own teardown: the watchdog then stops touching CUDA.
  std::atomic<bool> stop{false};
  std::atomic<bool> stopped{false};
};
Registry& reg() {
  static Registry* r = new Registry();
  return *r;
}

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

// Records the first failure, reports it at once (the host may be busy elsewhere), then aborts the
// communicator so that its kernels exit and nothing waits on them forever.
void failComm(Comm& c, const std::string& msg) {
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.failed.load()) return;
    c.error = msg;
    for (auto& p : c.ops)
      if (!p->complete) p->doomed.store(true);
    c.failed.store(true);
  }
  std::fprintf(stderr, "meshtrain nccl watchdog: %s\n", msg.c_str());
  if (!c.aborted.exchange(true)) {
    cudaSetDevice(c.dev);
    int rc = api().commAbort(c.comm);
    if (rc != nc::kSuccess) std::fprintf(stderr, "meshtrain nccl watchdog: ncclCommAbort on %s: %s\n", c.where().c_str(), ncclMessage(rc).c_str());
  }
}

[[noreturn]] void throwFailed(Comm& c, const std::string& what) {
  std::lock_guard<std::mutex> lock(c.mu);
  throw Error(cat("nccl: ", what, " on ", c.where(), " cannot complete: ", c.error));
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

// One pass over a communicator: completed events, timeouts, asynchronous errors.
void inspect(Comm& c) {
  std::lock_guard<std::mutex> alive(c.life);
  if (c.failed.load() || c.closed.load()) return;
  cudaSetDevice(c.dev);
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
  if (!failure.empty()) failComm(c, failure);
}

void watchdog() {
  while (!reg().stop.load()) {
    std::vector<std::shared_ptr<Comm>> live;
    {
      std::lock_guard<std::mutex> lock(reg().mu);
      for (auto& [h, c] : reg().comms) live.push_back(c);
    }
    for (auto& c : live)
      if (!reg().stop.load()) inspect(*c);
    live.clear();  // the last references may destroy events: not after stop
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  reg().stopped.store(true);
}

// Registered after the CUDA runtime initialized, so it runs before the runtime's exit handler.
void stopWatchdog() {
  reg().stop.store(true);
  for (int i = 0; i < 100 && !reg().stopped.load(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(2));
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

void checkDevice(int dev) {
  int n = cudaDeviceCountCached();
  MT_CHECK(dev >= 0 && dev < n, "nccl: cuda:", dev, " does not exist (", n, " CUDA device(s))");
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

void streamWait(Comm& c, Pending& p) {
  cudaCheck(cudaStreamWaitEvent(computeStream(c.dev), p.done, 0), "nccl: cudaStreamWaitEvent (compute waits for communication)");
}

}  // namespace

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

int64_t ncclCommOpen(int dev, const std::string& uniqueId, int size, int rank, const std::string& name,
                     int64_t timeoutMs, bool blockingWait) {
  const NcclApi& a = api();
  checkDevice(dev);
  MT_CHECK(uniqueId.size() == sizeof(nc::UniqueId), "nccl: the unique id of ", name, " has ", uniqueId.size(),
           " bytes, expected ", sizeof(nc::UniqueId));
  MT_CHECK(size >= 1 && rank >= 0 && rank < size, "nccl: rank ", rank, " is outside a group of ", size);
  cudaUseDevice(dev);
  auto c = make(dev, size, rank, name, timeoutMs, blockingWait);
  nc::UniqueId id;
  std::memcpy(id.internal, uniqueId.data(), sizeof id.internal);
  int rc = a.commInitRank(&c->comm, size, id, rank);
  if (rc != nc::kSuccess) {
    freeStorage(c->scratch);
    throw Error(cat("nccl: ncclCommInitRank for ", c->where(), " failed: ", ncclMessage(rc)));
  }
  return add(std::move(c));
}

int64_t ncclCommSplitOf(int64_t parent, int color, int key, int size, int rank, const std::string& name,
                        int64_t timeoutMs) {
  const NcclApi& a = api();
  auto p = get(parent);
  MT_CHECK(a.commSplit, "nccl: this libnccl has no ncclCommSplit (NCCL >= 2.18 needed)");
  if (p->failed.load()) throwFailed(*p, cat("splitting off ", name));
  cudaUseDevice(p->dev);
  nc::Comm child = nullptr;
  int rc = a.commSplit(p->comm, color < 0 ? nc::kSplitNoColor : color, key, &child, nullptr);
  MT_CHECK(rc == nc::kSuccess, "nccl: ncclCommSplit of ", p->where(), " into ", name, " failed: ", ncclMessage(rc));
  if (color < 0) return -1;
  MT_CHECK(child, "nccl: ncclCommSplit of ", p->where(), " returned no communicator for ", name);
  auto c = make(p->dev, size, rank, name, timeoutMs, p->blockingWait);
  c->comm = child;
  return add(std::move(c));
}

int64_t ncclCommIssue(int64_t h, const NcclOp& op) {
  const NcclApi& a = api();
  auto c = get(h);
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

void ncclCommClose(int64_t h) {
  auto c = get(h);
  cudaUseDevice(c->dev);
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
  if (!c->aborted.exchange(true)) {
    const NcclApi& a = api();
    int rc = a.commFinalize ? a.commFinalize(c->comm) : nc::kSuccess;
    int rc2 = a.commDestroy(c->comm);
    if (firstError.empty() && (rc != nc::kSuccess || rc2 != nc::kSuccess)) {
      firstError = cat("nccl: destroying ", c->where(), ": ", ncclMessage(rc != nc::kSuccess ? rc : rc2));
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
