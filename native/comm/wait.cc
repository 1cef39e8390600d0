// Waiting on peers' flags: a short spin when cores are free, then futex sleeps in slices,
// between which the waiter checks for destruction, failed or dead peers and its deadline, so
// a collective never waits forever and its error names who it was waiting for.
#include <chrono>
#include <cstring>
#include "comm/shm_comm.h"
#include "util/check.h"

namespace mt::comm {
namespace {
constexpr int64_t kSleepNs = 50'000'000;                       // one futex sleep; then health checks
constexpr auto kHealthEvery = std::chrono::milliseconds(100);  // liveness checks of peers
}  // namespace

WaitCtx ShmComm::begin(const OpDesc& d, uint32_t seq) const {
  auto now = Clock::now();
  return WaitCtx{&d, seq, now, now + std::chrono::milliseconds(cfg_.timeoutMs), now + kHealthEvery};
}

void ShmComm::waitFlag(WaitCtx& w, int peer, Flag& f, uint32_t target, const char* phase) {
  if (reached(f.value.load(std::memory_order_acquire), target)) return;
  if (cfg_.spinNs > 0) {
    auto until = Clock::now() + std::chrono::nanoseconds(cfg_.spinNs);
    do {
      for (int i = 0; i < 32; i++) {
        cpuRelax();
        if (reached(f.value.load(std::memory_order_acquire), target)) return;
      }
    } while (Clock::now() < until);
  }
  for (;;) {
    uint32_t v = f.value.load(std::memory_order_seq_cst);
    if (reached(v, target)) return;
    sleepOnce(f, v, kSleepNs);
    if (reached(f.value.load(std::memory_order_acquire), target)) return;
    health(w, peer, phase, false);
  }
}

void ShmComm::waitAll(WaitCtx& w, Flag Ctl::*flag, uint32_t target, const char* phase) {
  for (int p = 0; p < cfg_.size; p++)
    if (p != cfg_.rank) waitFlag(w, p, ctl(p).*flag, target, phase);
}

// Fails fast when the communicator is being destroyed, a peer failed or died, or time is up.
void ShmComm::health(WaitCtx& w, int peer, const char* phase, bool force) {
  const char* what = kindName(w.op->kind);
  std::string where = w.seq ? cat(what, " (collective #", w.seq, ") on ", groupName())
                            : cat(what, (w.op->kind == Kind::Send ? " to " : " from "), rankName(w.op->root), " on ", groupName());
  if (stopping_.load()) throw Error(cat(where, ": the communicator was destroyed while waiting"));
  for (int p = 0; p < cfg_.size; p++) {
    if (p == cfg_.rank || ctl(p).aborted.value.load() == 0) continue;
    std::string msg(ctl(p).abortMsg, strnlen(ctl(p).abortMsg, kAbortBytes));
    throw Error(cat(where, " failed because ", rankName(p), " failed: ", msg));
  }
  auto now = Clock::now();
  if (force || now >= w.nextHealth || now >= w.deadline) {
    w.nextHealth = now + kHealthEvery;
    // The peer waited on first, then everyone: any dead rank dooms the collective.
    for (int k = -1; k < cfg_.size; k++) {
      int p = k < 0 ? peer : k;
      if (p < 0 || p == cfg_.rank || processAlive(pids_[p])) continue;
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - w.start).count();
      throw Error(cat(where, ": ", rankName(p), " (pid ", pids_[p], ") died; noticed after waiting ", ms,
                      " ms for ", phase));
    }
  }
  if (now >= w.deadline) timeout(w, peer, phase);
}

void ShmComm::timeout(const WaitCtx& w, int peer, const char* phase) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - w.start).count();
  const char* what = kindName(w.op->kind);
  if (w.seq == 0) {
    throw Error(cat(what, (w.op->kind == Kind::Send ? " to " : " from "), rankName(peer), " on ", groupName(),
                    " timed out after ", ms, " ms waiting for ", rankName(peer), " to ", phase,
                    " (the timeout is ", cfg_.timeoutMs, " ms)"));
  }
  std::string missing, lastSeen;
  int nMissing = 0;
  for (int p = 0; p < cfg_.size; p++) {
    if (p == cfg_.rank) continue;
    uint32_t e = ctl(p).entered.value.load();
    if (reached(e, w.seq)) continue;
    missing += cat(nMissing++ ? ", " : "", p);
    const Meta& m = ctl(p).meta[e % kMetaRing];
    lastSeen += cat("; ", rankName(p), e == 0 ? " has not entered any collective"
                                               : cat(" last entered #", e, " (", kindName(Kind(m.kind)), ")"));
  }
  std::string head = cat(what, " (collective #", w.seq, ") on ", groupName(), " timed out after ", ms, " ms (the timeout is ",
                         cfg_.timeoutMs, " ms): ");
  if (nMissing) {
    throw Error(cat(head, nMissing == 1 ? "rank " : "ranks ", missing, " of the group did not arrive", lastSeen));
  }
  throw Error(cat(head, "every rank arrived, but ", rankName(peer), " did not finish: waiting for ", phase));
}

}  // namespace mt::comm
