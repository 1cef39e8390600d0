#include "comm/arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <cstring>
#include "util/check.h"

namespace mt::comm {

ArenaSet::ArenaSet(const std::string& name, int rank, int size, size_t bytes) : rank_(rank) {
  bytes = (bytes + 4095) / 4096 * 4096;
  own_ = Segment::create(name, bytes, /*prefault=*/false);
  bases_.assign(size, nullptr);
  bases_[rank] = own_.data();
  free_[0] = int64_t(bytes);
}

void ArenaSet::connect(const std::vector<std::string>& names) {
  for (int r = 0; r < int(names.size()); r++) {
    if (r == rank_) continue;
    peers_.push_back(Segment::open(names[r], 0, /*populate=*/false));
    bases_[r] = peers_.back().data();
  }
}

int64_t ArenaSet::offsetOf(const void* p, int64_t bytes) const {
  const char* c = static_cast<const char*>(p);
  if (c < own_.data() || c + bytes > own_.data() + own_.size()) return -1;
  return c - own_.data();
}

int64_t ArenaSet::alloc(size_t bytes) {
  int64_t align = bytes >= (64 << 10) ? 4096 : 64;
  int64_t need = (int64_t(bytes) + 63) / 64 * 64;
  if (need == 0) need = 64;
  std::lock_guard<std::mutex> l(mu_);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    int64_t start = (it->first + align - 1) / align * align;
    int64_t end = it->first + it->second;
    if (start + need > end) continue;
    int64_t fOff = it->first;
    free_.erase(it);
    if (start > fOff) free_[fOff] = start - fOff;
    if (start + need < end) free_[start + need] = end - start - need;
    taken_[start] = need;
    int64_t last = (start + need + 4095) / 4096 * 4096;
    if (last > touched_) {
      // First use of these pages: fault them in now, not inside a collective.
      int64_t from = std::max(touched_, start / 4096 * 4096);
      std::memset(own_.data() + from, 0, size_t(last - from));
      touched_ = last;
    }
    return start;
  }
  return -1;
}

void ArenaSet::release(int64_t off) {
  std::lock_guard<std::mutex> l(mu_);
  auto t = taken_.find(off);
  if (t == taken_.end()) return;
  int64_t start = off, len = t->second;
  taken_.erase(t);
  auto next = free_.lower_bound(start);
  if (next != free_.end() && next->first == start + len) {
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      prev->second += len;
      return;
    }
  }
  free_[start] = len;
}

size_t ArenaSet::used() const {
  std::lock_guard<std::mutex> l(mu_);
  size_t n = 0;
  for (auto& [o, b] : taken_) n += size_t(b);
  return n;
}

}  // namespace mt::comm
