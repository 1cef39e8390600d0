// Point-to-point transfers: the sender writes chunks into its outgoing slots for the receiver
// (two per peer, alternating), the receiver copies them out; each side rings the other's bell.
#include <algorithm>
#include <cstring>
#include "comm/shm_comm.h"
#include "util/check.h"

namespace mt::comm {

bool ShmComm::advanceSend(P2PTask& t) {
  const int r = cfg_.rank, q = t.op->root;
  const int64_t cap = int64_t(layout_.p2pSlotBytes - kP2PHeader);
  if (t.msgSeq == 0) t.msgSeq = ++sendSeq_[q];
  bool moved = false;
  while (t.chunk < t.chunks) {
    uint32_t c = sent_[q];
    // Slot c%2 last held chunk c-2: it is free once the receiver has taken c-1 chunks.
    if (!reached(p2pPairs(&ctl(q))[r].taken.value.load(std::memory_order_acquire), c - 1)) break;
    char* s = p2pSlot(r, q, c);
    int64_t len = std::min(cap, t.bytes - t.done);
    P2PHeader h{uint64_t(t.bytes), t.msgSeq};
    std::memcpy(s, &h, sizeof h);
    if (len > 0) std::memcpy(s + kP2PHeader, t.op->in + t.done, size_t(len));
    t.done += len;
    t.chunk++;
    sent_[q] = c + 1;
    post(p2pPairs(&ctl(r))[q].sent, c + 1);
    bump(ctl(q).p2pBell);
    moved = true;
  }
  return moved;
}

bool ShmComm::advanceRecv(P2PTask& t) {
  const int r = cfg_.rank, p = t.op->root;
  const int64_t cap = int64_t(layout_.p2pSlotBytes - kP2PHeader);
  bool moved = false;
  while (t.chunk < t.chunks) {
    uint32_t c = taken_[p];
    if (!reached(p2pPairs(&ctl(p))[r].sent.value.load(std::memory_order_acquire), c + 1)) break;
    const char* s = p2pSlot(p, r, c);
    P2PHeader h;
    std::memcpy(&h, s, sizeof h);
    if (t.chunk == 0) {
      t.msgSeq = ++recvSeq_[p];
      MT_CHECK(h.msgSeq == t.msgSeq, "recv from ", rankName(p), " on ", groupName(), ": internal error: message #",
               h.msgSeq, " arrived while #", t.msgSeq, " was expected");
      MT_CHECK(int64_t(h.msgBytes) == t.bytes, "recv from ", rankName(p), " on ", groupName(), ": ", rankName(p),
               " sent ", h.msgBytes, " bytes (its send #", h.msgSeq, "), but this rank receives ", t.bytes,
               " bytes; shapes or dtypes differ");
    }
    int64_t len = std::min(cap, t.bytes - t.done);
    if (len > 0) std::memcpy(t.op->out + t.done, s + kP2PHeader, size_t(len));
    t.done += len;
    t.chunk++;
    taken_[p] = c + 1;
    post(p2pPairs(&ctl(r))[p].taken, c + 1);
    bump(ctl(p).p2pBell);
    moved = true;
  }
  return moved;
}

void ShmComm::checkP2P(P2PTask& t) {
  health(t.w, t.op->root, t.op->kind == Kind::Send ? "receive" : "send", false);
}

}  // namespace mt::comm
