#include "comm/shm_comm.h"

#include <unistd.h>
#include <algorithm>
#include <cstring>
#include "comm/arena.h"
#include "comm/reduce.h"
#include "util/check.h"

namespace mt::comm {
namespace {

const char* dtypeName(int32_t d) {
  static const char* names[] = {"f32", "f64", "bf16", "f16", "i32", "i64"};
  return d >= 0 && d < 6 ? names[d] : "?";
}
const char* redName(int32_t r) {
  static const char* names[] = {"sum", "avg", "max", "min"};
  return r >= 0 && r < 4 ? names[r] : "?";
}

std::string describe(const Meta& m) {
  Kind k = Kind(m.kind);
  std::string s = kindName(k);
  if (k == Kind::AllReduce || k == Kind::Reduce || k == Kind::ReduceScatter) s += cat("(", redName(m.redop), ")");
  if (k == Kind::Reduce || k == Kind::Broadcast) s += cat(" with root ", m.root);
  if (k != Kind::Barrier && k != Kind::Check) s += cat(" of ", m.count, " ", dtypeName(m.dtype), " elements");
  return s;
}

// Element offset of piece k of n of a round of m elements (64-byte aligned for f32 when large).
inline int64_t pieceStart(int64_t m, int n, int k) {
  if (k >= n) return m;
  int64_t v = m * k / n;
  return m >= int64_t(n) * 64 ? v / 16 * 16 : v;
}

}  // namespace

ShmComm::ShmComm(CommConfig cfg, std::shared_ptr<ArenaSet> arena)
    : cfg_(std::move(cfg)), layout_(cfg_.size, cfg_.slotBytes, cfg_.p2pSlotBytes), arena_(std::move(arena)) {
  MT_CHECK(cfg_.size >= 1 && cfg_.rank >= 0 && cfg_.rank < cfg_.size, "shm: bad rank ", cfg_.rank, " of ", cfg_.size);
  MT_CHECK(int(cfg_.globalRanks.size()) == cfg_.size, "shm: ", cfg_.globalRanks.size(), " global ranks for a group of ", cfg_.size);
  MT_CHECK(cfg_.slotBytes >= 4096 && cfg_.p2pSlotBytes > kP2PHeader + 64, "shm: staging slots too small");
  own_ = Segment::create(cfg_.segName, layout_.total);
  Ctl& c = *reinterpret_cast<Ctl*>(own_.data());
  c.pid = int32_t(getpid());
  c.rank = cfg_.rank;
  c.size = cfg_.size;
  c.segBytes = layout_.total;
  c.slotBytes = layout_.slotBytes;
  c.p2pSlotBytes = layout_.p2pSlotBytes;
  std::atomic_thread_fence(std::memory_order_release);
  c.magic = kMagic;
  int n = cfg_.size;
  base_.assign(n, nullptr);
  base_[cfg_.rank] = own_.data();
  pids_.assign(n, 0);
  pids_[cfg_.rank] = c.pid;
  peerIn_.assign(n, -1);
  peerOut_.assign(n, -1);
  sendSeq_.assign(n, 0);
  recvSeq_.assign(n, 0);
  sent_.assign(n, 0);
  taken_.assign(n, 0);
}

void ShmComm::connect(const std::vector<std::string>& names) {
  MT_CHECK(int(names.size()) == cfg_.size, "shm: ", names.size(), " segment names for a group of ", cfg_.size);
  peers_.clear();
  for (int p = 0; p < cfg_.size; p++) {
    if (p == cfg_.rank) continue;
    Segment s = Segment::open(names[p], layout_.total);
    Ctl& c = *reinterpret_cast<Ctl*>(s.data());
    MT_CHECK(c.magic == kMagic && c.rank == p && c.size == cfg_.size && c.slotBytes == layout_.slotBytes &&
                 c.p2pSlotBytes == layout_.p2pSlotBytes,
             "shm: segment ", names[p], " of ", rankName(p), " does not match this communicator (a different "
             "meshtrain version, or slot sizes that differ between ranks)");
    base_[p] = s.data();
    pids_[p] = c.pid;
    peers_.push_back(std::move(s));
  }
}

std::string ShmComm::groupName() const {
  const auto& g = cfg_.globalRanks;
  bool identity = true;
  for (int i = 0; i < cfg_.size; i++) identity = identity && g[i] == i;
  bool contiguous = true;
  for (int i = 1; i < cfg_.size; i++) contiguous = contiguous && g[i] == g[i - 1] + 1;
  std::string ranks;
  if (contiguous && cfg_.size > 2) ranks = cat(g[0], "-", g[cfg_.size - 1]);
  else for (int i = 0; i < cfg_.size; i++) ranks += cat(i ? "," : "", g[i]);
  return cat("group '", cfg_.group, "' (", identity ? "ranks " : "global ranks ", ranks, ")");
}

std::string ShmComm::rankName(int r) const {
  if (cfg_.globalRanks[r] == r) return cat("rank ", r);
  return cat("rank ", r, " (global ", cfg_.globalRanks[r], ")");
}

std::string ShmComm::broken() const {
  std::lock_guard<std::mutex> l(brokenMu_);
  return broken_;
}

void ShmComm::abort(const std::string& why) {
  {
    std::lock_guard<std::mutex> l(brokenMu_);
    if (!broken_.empty()) return;
    broken_ = why;
  }
  Ctl& c = ctl(cfg_.rank);
  size_t n = std::min(why.size(), kAbortBytes - 1);
  std::memcpy(c.abortMsg, why.data(), n);
  c.abortMsg[n] = 0;
  post(c.aborted, 1);
  // Wake anyone sleeping on one of our flags so they notice now, not at their next health check.
  for (Flag* f : {&c.entered, &c.posted, &c.reduced, &c.consumed, &c.checkSeq, &c.p2pBell}) futexWake(&f->value);
}

char* ShmComm::arenaPtr(int r, int64_t off) const {
  return arena_->base(cfg_.globalRanks[r]) + off;
}

int64_t ShmComm::arenaOffsetOf(const void* p, int64_t bytes) const {
  return arena_ ? arena_->offsetOf(p, bytes) : -1;
}

// ---- collectives -----------------------------------------------------------------------------

void ShmComm::postRound(uint32_t k) {
  Ctl& me = ctl(cfg_.rank);
  post(me.reduced, k + 1);
  post(me.consumed, k + 1);
}

void ShmComm::enter(const OpDesc& d, WaitCtx& w) {
  const int n = cfg_.size, r = cfg_.rank;
  Ctl& me = ctl(r);
  const size_t E = itemsize(d.dtype);
  int64_t inBytes = d.count * int64_t(E) * (d.kind == Kind::ReduceScatter ? n : 1);
  int64_t outBytes = d.count * int64_t(E) * (d.kind == Kind::AllGather ? n : 1);
  if (d.kind == Kind::Check) {
    size_t len = std::min(d.text.size(), kCheckBytes - 1);
    std::memcpy(me.check, d.text.data(), len);
    me.check[len] = 0;
  }
  Meta& m = me.meta[w.seq % kMetaRing];
  m.seq = w.seq;
  m.kind = uint32_t(d.kind);
  m.dtype = int32_t(d.dtype);
  m.root = d.root;
  m.redop = int32_t(d.red);
  m.count = d.count;
  m.inOff = d.in && inBytes > 0 ? arenaOffsetOf(d.in, inBytes) : -1;
  m.outOff = d.out && outBytes > 0 ? arenaOffsetOf(d.out, outBytes) : -1;
  post(me.entered, w.seq);
  waitAll(w, &Ctl::entered, w.seq, "the other ranks to arrive");
  for (int p = 0; p < n; p++) {
    const Meta& pm = ctl(p).meta[w.seq % kMetaRing];
    MT_CHECK(pm.seq == w.seq, "shm: internal error: ", rankName(p), " announced #", pm.seq, " for #", w.seq);
    bool same = pm.kind == m.kind && pm.dtype == m.dtype && pm.count == m.count;
    if (Kind(m.kind) == Kind::Reduce || Kind(m.kind) == Kind::Broadcast) same = same && pm.root == m.root;
    if (Kind(m.kind) == Kind::AllReduce || Kind(m.kind) == Kind::Reduce || Kind(m.kind) == Kind::ReduceScatter)
      same = same && pm.redop == m.redop;
    if (!same) {
      throw Error(cat("collective mismatch on ", groupName(), " at collective #", w.seq, ": ", rankName(r),
                      " (this rank) called ", describe(m), ", but ", rankName(p), " called ", describe(pm)));
    }
    peerIn_[p] = pm.inOff;
    peerOut_[p] = pm.outOff;
  }
}

void ShmComm::runCollective(const OpDesc& d) {
  {
    std::string b = broken();
    if (!b.empty()) {
      throw Error(cat(kindName(d.kind), " on ", groupName(), " cannot run: this communicator failed earlier: ", b));
    }
  }
  uint32_t seq = ++seq_;
  WaitCtx w = begin(d, seq);
  try {
    enter(d, w);
    switch (d.kind) {
      case Kind::AllReduce: allReduce(d, w, true); break;
      case Kind::Reduce: allReduce(d, w, false); break;
      case Kind::ReduceScatter: reduceScatter(d, w); break;
      case Kind::AllGather: allGather(d, w); break;
      case Kind::Broadcast: broadcast(d, w); break;
      case Kind::Check: compareChecks(d); break;
      case Kind::Barrier: break;
      default: throw Error(cat("shm: ", kindName(d.kind), " is not a collective"));
    }
  } catch (const std::exception& e) {
    abort(e.what());
    throw;
  }
}

void ShmComm::finishInArena(WaitCtx& w, uint32_t lastRound) {
  // Peers read this rank's buffer in place: it is the caller's again once they all finished.
  waitAll(w, &Ctl::consumed, lastRound + 1, "the other ranks to finish reading this rank's buffer");
}

// Rank r reduces piece r of every round from all ranks' buffers (staged copies, or the
// tensors themselves when they live in the arena); then every rank gathers the other pieces.
void ShmComm::allReduce(const OpDesc& d, WaitCtx& w, bool toAll) {
  const int n = cfg_.size, r = cfg_.rank;
  if (toAll && allInArena() && d.count > 0) return allReduceInPlace(d, w);
  const size_t E = itemsize(d.dtype);
  const int64_t cap = std::max<int64_t>(1, int64_t(layout_.slotBytes / E));
  const double scale = d.red == RedOp::Avg ? 1.0 / n : 1.0;
  Ctl& me = ctl(r);
  // Whether rank p's reduced piece ends up in its own buffer (peers then read it there).
  auto resultInBuffer = [&](int p) { return peerIn_[p] >= 0 && (toAll || p == d.root); };
  const bool writesOut = toAll || r == d.root;
  std::vector<const void*> src(n);
  uint32_t last = rounds_ - 1;
  for (int64_t base = 0; base < d.count; base += cap) {
    const int64_t m = std::min(cap, d.count - base);
    const uint32_t K = rounds_++;
    last = K;
    char* mine = slot(r, K);
    const bool needSlot = peerIn_[r] < 0 || !resultInBuffer(r);
    if (needSlot) waitAll(w, &Ctl::consumed, K - 1, "the other ranks to release a staging slot");
    if (peerIn_[r] < 0) {
      for (int k = 0; k < n; k++) {
        if (k == r) continue;
        int64_t a = pieceStart(m, n, k), b = pieceStart(m, n, k + 1);
        std::memcpy(mine + a * E, d.in + (base + a) * E, (b - a) * E);
      }
    }
    post(me.posted, K + 1);
    const int64_t a = pieceStart(m, n, r), b = pieceStart(m, n, r + 1);
    for (int p = 0; p < n; p++) {
      if (p == r) {
        src[p] = d.in + (base + a) * E;
        continue;
      }
      waitFlag(w, p, ctl(p).posted, K + 1, "its input");
      src[p] = peerIn_[p] >= 0 ? arenaPtr(p, peerIn_[p] + (base + a) * E) : slot(p, K) + a * E;
    }
    void* out1 = writesOut ? d.out + (base + a) * E : nullptr;
    void* out2 = resultInBuffer(r) ? nullptr : mine + a * E;
    if (!out1) std::swap(out1, out2);
    reduceInto(d.dtype, d.red, out1, out2, src.data(), n, b - a, scale);
    post(me.reduced, K + 1);
    if (writesOut) {
      for (int p = 0; p < n; p++) {
        if (p == r) continue;
        int64_t pa = pieceStart(m, n, p), pb = pieceStart(m, n, p + 1);
        waitFlag(w, p, ctl(p).reduced, K + 1, "its reduced piece");
        const char* from = resultInBuffer(p) ? arenaPtr(p, peerIn_[p] + (base + pa) * E) : slot(p, K) + pa * E;
        std::memcpy(d.out + (base + pa) * E, from, (pb - pa) * E);
      }
    }
    post(me.consumed, K + 1);
  }
  if (peerIn_[r] >= 0 && d.count > 0) finishInArena(w, last);
}

// Every buffer lives in an arena: rank r reduces piece r of all buffers and writes the result
// straight into piece r of every buffer. Each rank reads the message once and writes it once,
// with no staging and no gather phase; one flag at the end says a rank is done with the others'
// buffers. (A rank reads a block of piece r from every buffer before writing that block back.)
void ShmComm::allReduceInPlace(const OpDesc& d, WaitCtx& w) {
  const int n = cfg_.size, r = cfg_.rank;
  const size_t E = itemsize(d.dtype);
  Ctl& me = ctl(r);
  const uint32_t K = rounds_++;
  const int64_t a = pieceStart(d.count, n, r), b = pieceStart(d.count, n, r + 1);
  std::vector<const void*> src(n);
  std::vector<void*> dst(n);
  for (int p = 0; p < n; p++) {
    char* piece = p == r ? d.out + a * E : arenaPtr(p, peerIn_[p] + a * E);
    src[p] = piece;
    dst[p] = piece;
  }
  post(me.posted, K + 1);
  reduceInto(d.dtype, d.red, dst.data(), n, src.data(), n, b - a, d.red == RedOp::Avg ? 1.0 / n : 1.0);
  post(me.reduced, K + 1);
  waitAll(w, &Ctl::reduced, K + 1, "the other ranks to write their reduced pieces into this rank's buffer");
  post(me.consumed, K + 1);
}

bool ShmComm::allInArena() const {
  for (int p = 0; p < cfg_.size; p++)
    if (peerIn_[p] < 0) return false;
  return true;
}

// Rank r reduces its segment [r*M, (r+1)*M) of every rank's input into its output.
void ShmComm::reduceScatter(const OpDesc& d, WaitCtx& w) {
  const int n = cfg_.size, r = cfg_.rank;
  const size_t E = itemsize(d.dtype);
  const int64_t M = d.count;
  const int64_t cap = allInArena() ? std::max<int64_t>(1, M) : std::max<int64_t>(1, int64_t(layout_.slotBytes / E) / n);
  const double scale = d.red == RedOp::Avg ? 1.0 / n : 1.0;
  Ctl& me = ctl(r);
  std::vector<const void*> src(n);
  uint32_t last = rounds_ - 1;
  for (int64_t base = 0; base < M; base += cap) {
    const int64_t m = std::min(cap, M - base);
    const uint32_t K = rounds_++;
    last = K;
    char* mine = slot(r, K);
    if (peerIn_[r] < 0) {
      waitAll(w, &Ctl::consumed, K - 1, "the other ranks to release a staging slot");
      for (int q = 0; q < n; q++)
        if (q != r) std::memcpy(mine + q * m * E, d.in + (q * M + base) * E, m * E);
    }
    post(me.posted, K + 1);
    for (int p = 0; p < n; p++) {
      if (p == r) {
        src[p] = d.in + (r * M + base) * E;
        continue;
      }
      waitFlag(w, p, ctl(p).posted, K + 1, "its input");
      src[p] = peerIn_[p] >= 0 ? arenaPtr(p, peerIn_[p] + (r * M + base) * E) : slot(p, K) + r * m * E;
    }
    reduceInto(d.dtype, d.red, d.out + base * E, nullptr, src.data(), n, m, scale);
    postRound(K);
  }
  if (peerIn_[r] >= 0 && M > 0) finishInArena(w, last);
}

void ShmComm::allGather(const OpDesc& d, WaitCtx& w) {
  const int n = cfg_.size, r = cfg_.rank;
  const size_t E = itemsize(d.dtype);
  const int64_t M = d.count;
  const int64_t cap = allInArena() ? std::max<int64_t>(1, M) : std::max<int64_t>(1, int64_t(layout_.slotBytes / E));
  Ctl& me = ctl(r);
  uint32_t last = rounds_ - 1;
  for (int64_t base = 0; base < M; base += cap) {
    const int64_t m = std::min(cap, M - base);
    const uint32_t K = rounds_++;
    last = K;
    if (peerIn_[r] < 0) {
      waitAll(w, &Ctl::consumed, K - 1, "the other ranks to release a staging slot");
      std::memcpy(slot(r, K), d.in + base * E, m * E);
    }
    post(me.posted, K + 1);
    char* own = d.out + (r * M + base) * E;
    if (own != d.in + base * E) std::memmove(own, d.in + base * E, m * E);
    for (int p = 0; p < n; p++) {
      if (p == r) continue;
      waitFlag(w, p, ctl(p).posted, K + 1, "its input");
      const char* from = peerIn_[p] >= 0 ? arenaPtr(p, peerIn_[p] + base * E) : slot(p, K);
      std::memcpy(d.out + (p * M + base) * E, from, m * E);
    }
    postRound(K);
  }
  if (peerIn_[r] >= 0 && M > 0) finishInArena(w, last);
}

void ShmComm::broadcast(const OpDesc& d, WaitCtx& w) {
  const int r = cfg_.rank, root = d.root;
  const size_t E = itemsize(d.dtype);
  const int64_t cap = peerIn_[root] >= 0 ? std::max<int64_t>(1, d.count) : std::max<int64_t>(1, int64_t(layout_.slotBytes / E));
  Ctl& me = ctl(r);
  uint32_t last = rounds_ - 1;
  for (int64_t base = 0; base < d.count; base += cap) {
    const int64_t m = std::min(cap, d.count - base);
    const uint32_t K = rounds_++;
    last = K;
    if (r == root && peerIn_[r] < 0) {
      waitAll(w, &Ctl::consumed, K - 1, "the other ranks to release a staging slot");
      std::memcpy(slot(r, K), d.in + base * E, m * E);
    }
    post(me.posted, K + 1);
    if (r != root) {
      waitFlag(w, root, ctl(root).posted, K + 1, "the root's data");
      const char* from = peerIn_[root] >= 0 ? arenaPtr(root, peerIn_[root] + base * E) : slot(root, K);
      std::memcpy(d.out + base * E, from, m * E);
    }
    postRound(K);
  }
  if (r == root && peerIn_[r] >= 0 && d.count > 0) finishInArena(w, last);
}

// The checker's announcements are "description\ncall site"; descriptions must agree.
void ShmComm::compareChecks(const OpDesc& d) {
  auto split = [](const char* s) {
    std::string t(s, strnlen(s, kCheckBytes));
    size_t nl = t.find('\n');
    return nl == std::string::npos ? std::make_pair(t, std::string()) : std::make_pair(t.substr(0, nl), t.substr(nl + 1));
  };
  auto [mine, mySite] = split(ctl(cfg_.rank).check);
  for (int p = 0; p < cfg_.size; p++) {
    if (p == cfg_.rank) continue;
    auto [theirs, site] = split(ctl(p).check);
    if (theirs == mine) continue;
    throw Error(cat("collective mismatch on ", groupName(), ": ", rankName(cfg_.rank), " (this rank) called ", mine,
                    " at ", mySite, ", but ", rankName(p), " called ", theirs, " at ", site));
  }
}

}  // namespace mt::comm
