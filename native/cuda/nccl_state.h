// Internal to the NCCL communicator (nccl_comm.cc: operations, watchdog, close; nccl_create.cc:
// init and split): one communicator's state and the helpers both files use.
#pragma once
#include "cuda/nccl_comm.h"
#ifdef MESHTRAIN_NCCL
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include "cuda/libraries.h"
#include "cuda/runtime.h"
#include "util/check.h"

namespace mt::ncclx {

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
  // Created with blocking = 0: NCCL calls may return ncclInProgress, and then nothing else may be
  // called on it until ncclCommGetAsyncError says ncclSuccess.
  bool nonBlocking = false;
  // False while NCCL is still building it (ncclCommPoll); the watchdog and operations skip it.
  std::atomic<bool> ready{false};
  std::string initCall;            // "ncclCommInitRankConfig", ... for messages
  std::shared_ptr<Comm> parent;    // a split in progress: the parent whose state says when it is done
  nc::Comm* slot = nullptr;        // where NCCL's thread writes the split's communicator
  std::atomic<bool> splitting{false};  // a split of this communicator is in progress
  int64_t scratch = 0;  // one f32 on the device for barriers
  int64_t nextOp = 1;
  std::mutex mu;    // ops and error, shared with the watchdog
  // Held by a watchdog pass, by close(), and around every ncclCommGetAsyncError and abort: the
  // handle is not destroyed under a call, and NCCL's state queries are never concurrent (in
  // non-blocking mode the query that sees ncclSuccess also joins NCCL's thread).
  std::mutex life;
  std::vector<std::shared_ptr<Pending>> ops;
  std::string error;
  std::atomic<bool> failed{false};
  std::atomic<bool> aborted{false};
  std::atomic<bool> closed{false};

  std::string where() const { return cat("group '", name, "' (rank ", rank, " of ", size, ", cuda:", dev, ")"); }
};

const NcclApi& api();
std::string ncclMessage(int rc);
std::shared_ptr<Comm> get(int64_t h);
// Registers a communicator (starting the watchdog on first use); returns its handle.
int64_t add(std::shared_ptr<Comm> c);
// A communicator record with its barrier scratch on cuda:dev (no NCCL handle yet).
std::shared_ptr<Comm> make(int dev, int size, int rank, const std::string& name, int64_t timeoutMs, bool blockingWait);
// Records the first failure of `c` (its error, its pending operations doomed) and prints it;
// false if it had failed already. Call with c.life held.
bool recordFailure(Comm& c, const std::string& msg);
// ncclCommAbort unless already aborted (`who` prefixes a failure's report). Call with c.life held.
void abortNow(Comm& c, const char* who);
// recordFailure, then abortNow on this thread (the watchdog aborts on a thread of its own instead).
void failComm(Comm& c, const std::string& msg);
[[noreturn]] void throwFailed(Comm& c, const std::string& what);
// ncclCommGetAsyncError under c.life: ncclSuccess, ncclInProgress, an error, or kGone once failed
// or aborted (then without waiting for c.life).
constexpr int kGone = -1;
int asyncState(Comm& c);
// Removes a communicator that never became usable: unregisters it, aborts it unless already
// aborted, frees its scratch.
void discard(int64_t h, Comm& c);

}  // namespace mt::ncclx
#endif
