// The shm communicator: the ranks of one group on one host, each with its own segment
// (layout.h). Collectives run on one thread at a time (the progress thread, or the caller when
// idle) in the order they were issued; point-to-point transfers advance on a second thread.
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>
#include "comm/layout.h"
#include "comm/segment.h"
#include "tensor/dtype.h"

namespace mt::comm {

class ArenaSet;

struct CommConfig {
  std::string segName;           // this rank's segment (mtshm.<job>.<comm>.<rank>.<pid>)
  std::string group;             // the group's name, for messages
  int rank = 0;
  int size = 1;
  std::vector<int> globalRanks;  // group rank -> world rank, for messages and arena lookups
  size_t slotBytes = 1 << 20;
  size_t p2pSlotBytes = 256 << 10;
  int64_t timeoutMs = 300000;
  int64_t spinNs = 0;            // busy-wait this long before sleeping (0 when ranks outnumber cores)
};

// One operation as issued from JS; pointers were resolved and bounds-checked at issue time.
struct OpDesc {
  Kind kind = Kind::Barrier;
  RedOp red = RedOp::Sum;
  DType dtype = DType::F32;
  int root = 0;        // root of reduce/broadcast; the peer of send/recv
  int64_t count = 0;   // elements: of the tensor (allReduce, reduce, broadcast, send, recv),
                       // of the output (reduceScatter) or of the input (allGather)
  char* in = nullptr;
  char* out = nullptr;
  std::string text;    // Check: "description\ncall site"
};

using Clock = std::chrono::steady_clock;

// What a waiting thread is doing, for error messages.
struct WaitCtx {
  const OpDesc* op;
  uint32_t seq;        // collective sequence number (0 for point-to-point)
  Clock::time_point start, deadline, nextHealth;
};

class ShmComm {
 public:
  ShmComm(CommConfig cfg, std::shared_ptr<ArenaSet> arena);
  // Maps the peers' segments (names indexed by group rank) and checks what they announce.
  void connect(const std::vector<std::string>& names);
  void unlinkOwn() { own_.unlink(); }

  // Runs one collective to completion on the calling thread; throws (and aborts) on failure.
  void runCollective(const OpDesc& d);

  // Point-to-point, advanced without blocking by the p2p thread: each returns whether it moved.
  struct P2PTask {
    const OpDesc* op;
    uint32_t msgSeq = 0;
    int64_t bytes = 0, done = 0;
    int64_t chunks, chunk = 0;
    WaitCtx w;
  };
  void startP2P(P2PTask& t) const { t.w = begin(*t.op, 0); }
  int64_t p2pChunks(int64_t bytes) const {
    int64_t cap = int64_t(layout_.p2pSlotBytes - kP2PHeader);
    return bytes <= 0 ? 1 : (bytes + cap - 1) / cap;
  }
  bool advanceSend(P2PTask& t);
  bool advanceRecv(P2PTask& t);
  // Throws when a blocked task has timed out or its peer died or failed.
  void checkP2P(P2PTask& t);
  Flag& myBell() { return ctl(cfg_.rank).p2pBell; }
  void ringOwnBell() { bump(myBell()); }

  // Marks this communicator failed, tells the peers (they fail instead of waiting) and wakes them.
  void abort(const std::string& why);
  std::string broken() const;
  void stop() { stopping_.store(true); }

  const CommConfig& config() const { return cfg_; }
  std::string groupName() const;    // "group 'world' (ranks 0-3)"
  std::string rankName(int r) const;  // "rank 2" or "rank 2 (global 6)"
  int64_t timeoutMs() const { return cfg_.timeoutMs; }
  void setTimeoutMs(int64_t ms) { cfg_.timeoutMs = ms; }

 private:
  Ctl& ctl(int r) const { return *reinterpret_cast<Ctl*>(base_[r]); }
  char* slot(int r, uint32_t round) const { return base_[r] + layout_.stagingOff + (round & 1) * layout_.slotBytes; }
  char* p2pSlot(int from, int to, uint32_t chunk) const {
    return base_[from] + layout_.p2pOff + (size_t(to) * 2 + (chunk & 1)) * layout_.p2pSlotBytes;
  }
  char* arenaPtr(int r, int64_t off) const;
  int64_t arenaOffsetOf(const void* p, int64_t bytes) const;

  WaitCtx begin(const OpDesc& d, uint32_t seq) const;
  void waitFlag(WaitCtx& w, int peer, Flag& f, uint32_t target, const char* phase);
  void waitAll(WaitCtx& w, Flag Ctl::*flag, uint32_t target, const char* phase);
  void health(WaitCtx& w, int peer, const char* phase, bool force);
  [[noreturn]] void timeout(const WaitCtx& w, int peer, const char* phase);

  void enter(const OpDesc& d, WaitCtx& w);
  void allReduce(const OpDesc& d, WaitCtx& w, bool toAll);
  void allReduceInPlace(const OpDesc& d, WaitCtx& w);
  bool allInArena() const;
  void reduceScatter(const OpDesc& d, WaitCtx& w);
  void allGather(const OpDesc& d, WaitCtx& w);
  void broadcast(const OpDesc& d, WaitCtx& w);
  void compareChecks(const OpDesc& d);
  void finishInArena(WaitCtx& w, uint32_t lastRound);
  void postRound(uint32_t k);

  CommConfig cfg_;
  Layout layout_;
  std::shared_ptr<ArenaSet> arena_;
  Segment own_;
  std::vector<Segment> peers_;
  std::vector<char*> base_;
  std::vector<int32_t> pids_;
  std::vector<int64_t> peerIn_;   // this collective's arena offsets per rank (-1: staged)
  std::vector<int64_t> peerOut_;
  uint32_t seq_ = 0;       // collectives entered
  uint32_t rounds_ = 0;    // collective rounds done (identical on every rank)
  std::vector<uint32_t> sendSeq_, recvSeq_;  // point-to-point messages per peer
  std::vector<uint32_t> sent_, taken_;       // point-to-point chunks per peer
  std::atomic<bool> stopping_{false};
  mutable std::mutex brokenMu_;
  std::string broken_;
};

}  // namespace mt::comm
