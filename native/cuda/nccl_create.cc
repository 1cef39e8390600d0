// Creating NCCL communicators without a hang: ncclCommInitRankConfig and ncclCommSplit with
// blocking = 0 return at once, ncclCommPoll reads the state (ncclCommGetAsyncError) and
// ncclCommAbandon aborts a creation that a peer will never finish. The caller (src/dist/nccl_init.ts)
// owns the deadline and the peer checks. NCCL < 2.14 (no ncclCommInitRankConfig) falls back to the
// blocking ncclCommInitRank, which cannot be aborted.
#include "cuda/nccl_comm.h"
#ifdef MESHTRAIN_NCCL
#include <cstring>
#include "cuda/device_memory.h"
#include "cuda/nccl_state.h"
#include "tensor/storage.h"

namespace mt {

using namespace ncclx;

namespace {

void checkDevice(int dev) {
  int n = cudaDeviceCountCached();
  MT_CHECK(dev >= 0 && dev < n, "nccl: cuda:", dev, " does not exist (", n, " CUDA device(s))");
}

nc::Config nonBlockingConfig() {
  nc::Config cfg;
  cfg.blocking = 0;
  return cfg;
}

// The call that builds `c`, for messages: "ncclCommSplit of group 'world' (...) into 'tp'" or
// "ncclCommInitRankConfig for group 'world' (...)".
std::string callOf(const Comm& c) {
  if (c.parent) return cat(c.initCall, " of ", c.parent->where(), " into group '", c.name, "'");
  return cat(c.initCall, " for ", c.where());
}

// A split finished on the parent's side: take the child NCCL wrote, then follow its own state.
int takeSplitChild(int64_t h, Comm& c) {
  Comm& p = *c.parent;
  if (p.failed.load()) {
    std::string msg;
    {
      std::lock_guard<std::mutex> lock(p.mu);
      msg = cat("nccl: ", callOf(c), " cannot complete: ", p.error);
    }
    discard(h, c);
    throw Error(msg);
  }
  const int state = asyncState(p);
  if (state == nc::kInProgress) return 0;
  if (state != nc::kSuccess) {
    std::string msg = cat(callOf(c), " failed: ", state == kGone ? "the parent was aborted" : ncclMessage(state),
                          "; the parent communicator was aborted");
    {
      std::lock_guard<std::mutex> alive(p.life);
      failComm(p, msg);
    }
    discard(h, c);
    throw Error(cat("nccl: ", msg));
  }
  p.splitting.store(false);
  c.comm = *c.slot;  // written by NCCL's thread, which the successful state query joined
  delete c.slot;
  c.slot = nullptr;
  if (!c.comm) {
    std::string msg = cat("nccl: ", callOf(c), " returned no communicator");
    discard(h, c);
    throw Error(msg);
  }
  c.parent.reset();
  return -1;  // go on with the child's own state
}

}  // namespace

int64_t ncclCommOpen(int dev, const std::string& uniqueId, int size, int rank, const std::string& name,
                     int64_t timeoutMs, bool blockingWait, bool nonBlocking) {
  const NcclApi& a = api();
  checkDevice(dev);
  MT_CHECK(uniqueId.size() == sizeof(nc::UniqueId), "nccl: the unique id of ", name, " has ", uniqueId.size(),
           " bytes, expected ", sizeof(nc::UniqueId));
  MT_CHECK(size >= 1 && rank >= 0 && rank < size, "nccl: rank ", rank, " is outside a group of ", size);
  MT_CHECK(timeoutMs > 0, "nccl: the timeout of ", name, " must be positive, got ", timeoutMs);
  cudaUseDevice(dev);
  auto c = make(dev, size, rank, name, timeoutMs, blockingWait);
  nc::UniqueId id;
  std::memcpy(id.internal, uniqueId.data(), sizeof id.internal);
  int rc;
  if (nonBlocking && a.commInitRankConfig) {
    c->nonBlocking = true;
    c->initCall = "ncclCommInitRankConfig";
    nc::Config cfg = nonBlockingConfig();
    rc = a.commInitRankConfig(&c->comm, size, id, rank, &cfg);
    if (rc == nc::kInProgress) rc = nc::kSuccess;  // ncclCommPoll follows it
  } else {
    c->initCall = nonBlocking ? "ncclCommInitRank (blocking: this libnccl has no ncclCommInitRankConfig, NCCL < 2.14)"
                              : "ncclCommInitRank (blocking: MESHTRAIN_NCCL_NONBLOCKING=0)";
    rc = a.commInitRank(&c->comm, size, id, rank);
    c->ready.store(rc == nc::kSuccess);
  }
  cudaForgetCurrentDevice();  // NCCL's set-up may switch this thread's device: cudaUseDevice asks again
  if (rc != nc::kSuccess) {
    std::string msg = cat("nccl: ", callOf(*c), " failed: ", ncclMessage(rc));
    if (c->nonBlocking && c->comm) {  // a non-blocking init that failed after creating the handle
      std::lock_guard<std::mutex> alive(c->life);
      c->aborted.store(true);
      a.commAbort(c->comm);
    }
    freeStorage(c->scratch);
    throw Error(msg);
  }
  return add(std::move(c));
}

int64_t ncclCommSplitOf(int64_t parent, int color, int key, int size, int rank, const std::string& name,
                        int64_t timeoutMs) {
  const NcclApi& a = api();
  auto p = get(parent);
  MT_CHECK(a.commSplit, "nccl: this libnccl has no ncclCommSplit (NCCL >= 2.18 needed)");
  MT_CHECK(color >= 0, "nccl: splitting ", p->where(), " into ", name, ": the color must be non-negative, got ", color);
  MT_CHECK(p->ready.load(), "nccl: splitting ", p->where(), ": the parent is still being created");
  MT_CHECK(!p->splitting.exchange(true), "nccl: splitting ", p->where(), " into ", name,
           ": another split of it is in progress (await it first)");
  if (p->failed.load()) {
    p->splitting.store(false);
    throwFailed(*p, cat("splitting off ", name));
  }
  cudaUseDevice(p->dev);
  auto c = make(p->dev, size, rank, name, timeoutMs, p->blockingWait);
  c->nonBlocking = p->nonBlocking;
  c->initCall = "ncclCommSplit";
  if (!p->nonBlocking) {
    // A blocking parent makes the split block too (NCCL runs it in the parent's mode).
    p->splitting.store(false);
    int rc = a.commSplit(p->comm, color, key, &c->comm, nullptr);
    if (rc != nc::kSuccess || !c->comm) {
      freeStorage(c->scratch);
      throw Error(cat("nccl: ncclCommSplit of ", p->where(), " into ", name,
                      rc != nc::kSuccess ? cat(" failed: ", ncclMessage(rc)) : std::string(" returned no communicator")));
    }
    c->ready.store(true);
    return add(std::move(c));
  }
  // NCCL's thread writes the child here when the split completes; it outlives an abandoned split
  // (leaked then, since that thread may still write it).
  c->slot = new nc::Comm(nullptr);
  c->parent = p;
  nc::Config cfg = nonBlockingConfig();
  int rc = a.commSplit(p->comm, color, key, c->slot, &cfg);
  if (rc != nc::kSuccess && rc != nc::kInProgress) {
    std::string msg = cat("ncclCommSplit of ", p->where(), " into group '", name, "' failed: ", ncclMessage(rc),
                          "; the parent communicator was aborted");
    {
      std::lock_guard<std::mutex> alive(p->life);
      failComm(*p, msg);
    }
    freeStorage(c->scratch);
    throw Error(cat("nccl: ", msg));
  }
  return add(std::move(c));
}

int ncclCommPoll(int64_t h) {
  auto c = get(h);
  if (c->ready.load()) return 1;
  if (c->parent && takeSplitChild(h, *c) == 0) return 0;
  const int state = asyncState(*c);
  if (state == nc::kInProgress) return 0;
  if (state != nc::kSuccess) {
    std::string msg = cat("nccl: ", callOf(*c), " failed: ", state == kGone ? "it was aborted" : ncclMessage(state),
                          "; the communicator was aborted");
    discard(h, *c);
    throw Error(msg);
  }
  c->ready.store(true);
  return 1;
}

std::string ncclCommAbandon(int64_t h, const std::string& reason) {
  auto c = get(h);
  std::string msg = cat(callOf(*c), " ", reason);
  if (c->parent) {
    // The parent is inside the split (ncclInProgress): only aborting it stops NCCL's thread.
    msg += "; the parent communicator was aborted";
    std::lock_guard<std::mutex> alive(c->parent->life);
    failComm(*c->parent, msg);
  } else {
    msg += "; the communicator was aborted";
  }
  discard(h, *c);
  return cat("nccl: ", msg);
}

}  // namespace mt
#endif
