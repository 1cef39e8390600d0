// What a rank's segment holds. Each rank of a communicator owns one segment (it alone writes
// its flags, staging slots and outgoing point-to-point slots); peers map it to read.
//
//   [Ctl | P2PPair x size] (page-aligned)  control: flags, collective announcements, checker text
//   [slot 0 | slot 1]                      double-buffered staging for collectives (slotBytes each)
//   [p2p: for each peer q, 2 slots]        outgoing point-to-point chunks (p2pSlotBytes each)
#pragma once
#include <cstddef>
#include <cstdint>
#include "comm/futex.h"

namespace mt::comm {

constexpr uint64_t kMagic = 0x31636d73746d0002ull;  // "mtsmc1", layout version 2
constexpr int kMetaRing = 8;
constexpr size_t kCheckBytes = 1024;
constexpr size_t kAbortBytes = 512;
constexpr size_t kP2PHeader = 64;

enum class Kind : uint32_t {
  AllReduce = 1, Reduce, ReduceScatter, AllGather, Broadcast, Barrier, Check, Send, Recv,
};
enum class RedOp : int32_t { Sum = 0, Avg = 1, Max = 2, Min = 3 };

inline const char* kindName(Kind k) {
  switch (k) {
    case Kind::AllReduce: return "allReduce";
    case Kind::Reduce: return "reduce";
    case Kind::ReduceScatter: return "reduceScatter";
    case Kind::AllGather: return "allGather";
    case Kind::Broadcast: return "broadcast";
    case Kind::Barrier: return "barrier";
    case Kind::Check: return "collective check";
    case Kind::Send: return "send";
    case Kind::Recv: return "recv";
  }
  return "?";
}

// A collective as announced by one rank when it enters it; peers compare and read offsets.
struct Meta {
  uint32_t seq;
  uint32_t kind;
  int32_t dtype;
  int32_t root;
  int32_t redop;
  int32_t pad;
  int64_t count;
  int64_t inOff;   // arena offset of the input when it lives in the arena, else -1 (staged)
  int64_t outOff;  // same for the output
};

struct P2PPair {
  Flag sent;   // in the sender's Ctl: chunks posted to this peer so far
  Flag taken;  // in the receiver's Ctl: chunks consumed from this peer so far
};

struct P2PHeader {
  uint64_t msgBytes;
  uint32_t msgSeq;
};

struct Ctl {
  uint64_t magic;
  int32_t pid;
  int32_t rank;
  int32_t size;
  int32_t pad0;
  uint64_t segBytes;
  uint64_t slotBytes;
  uint64_t p2pSlotBytes;
  Flag entered;    // seq of the last collective entered (its Meta is published first)
  Flag posted;     // collective rounds whose input this rank has staged
  Flag reduced;    // rounds whose reduced piece this rank has published
  Flag consumed;   // rounds this rank has finished reading from its peers
  Flag checkSeq;   // collective-checker announcements
  Flag p2pBell;    // rung by peers on any point-to-point progress; the p2p thread sleeps on it
  Flag aborted;    // non-zero once this rank's communicator failed; abortMsg says why
  char abortMsg[kAbortBytes];
  char check[kCheckBytes];
  Meta meta[kMetaRing];
  // P2PPair p2p[size] follows.
};

inline P2PPair* p2pPairs(Ctl* c) {
  return reinterpret_cast<P2PPair*>(reinterpret_cast<char*>(c) + ((sizeof(Ctl) + 63) / 64 * 64));
}

struct Layout {
  size_t ctlBytes, slotBytes, p2pSlotBytes, stagingOff, p2pOff, total;
  Layout(int size, size_t slot, size_t p2pSlot) : slotBytes(slot), p2pSlotBytes(p2pSlot) {
    size_t ctl = (sizeof(Ctl) + 63) / 64 * 64 + size_t(size) * sizeof(P2PPair);
    ctlBytes = (ctl + 4095) / 4096 * 4096;
    stagingOff = ctlBytes;
    p2pOff = stagingOff + 2 * slotBytes;
    total = p2pOff + size_t(size) * 2 * p2pSlotBytes;
  }
};

}  // namespace mt::comm
