// Per-rank shared arenas (one segment per rank of the world, mapped by every local rank):
// tensors allocated here are read by peers in place, so collectives on them skip the staging
// copies (the difference between ~3 and ~13 GB/s for a 2-rank all-reduce here). Pages are
// touched when a block is first handed out, and freed blocks are reused, so collectives never
// pay first-touch faults.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>
#include "comm/segment.h"

namespace mt::comm {

class ArenaSet {
 public:
  ArenaSet(const std::string& name, int rank, int size, size_t bytes);
  void connect(const std::vector<std::string>& names);  // indexed by world rank
  void unlinkOwn() { own_.unlink(); }

  // The offset of [p, p + bytes) in this rank's arena, or -1 when it is not inside it.
  int64_t offsetOf(const void* p, int64_t bytes) const;
  char* base(int rank) const { return bases_[rank]; }
  char* data() const { return own_.data(); }
  size_t capacity() const { return own_.size(); }

  // A block of `bytes` (64-byte aligned; 4 KiB aligned from 64 KiB), pages touched; -1 when full.
  int64_t alloc(size_t bytes);
  void release(int64_t off);
  size_t used() const;

 private:
  Segment own_;
  std::vector<Segment> peers_;
  std::vector<char*> bases_;
  int rank_;
  mutable std::mutex mu_;
  std::map<int64_t, int64_t> free_;   // offset -> bytes
  std::map<int64_t, int64_t> taken_;  // offset -> bytes
  int64_t touched_ = 0;               // pages below this offset were touched already
};

}  // namespace mt::comm
