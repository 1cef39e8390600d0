// The caching allocator's free blocks (device_memory.cc), one first-in-first-out list per size
// class in a flat table indexed by the class: a hit or a free is an index computation and a vector
// access, where a std::multimap node cost a malloc, a free and a tree walk per allocation (~5% of
// the host's samples in an eager ResNet step). Oldest first, as the multimap handed out equal
// sizes, so the same block comes back. Not thread-safe: the allocator's mutex guards it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace mt {

class BlockLists {
 public:
  static constexpr size_t kMinBlock = 512;
  static constexpr size_t kSmallLimit = size_t(1) << 20;

  // The size class of a request: multiples of 512 bytes below 1 MiB, above it 1/8 of a power of
  // two apart (at most 12.5% slack).
  static size_t sizeClass(size_t bytes) {
    if (bytes == 0) return kMinBlock;
    if (bytes < kSmallLimit) return (bytes + kMinBlock - 1) / kMinBlock * kMinBlock;
    const size_t top = size_t(1) << (63 - __builtin_clzll(bytes));
    const size_t step = top / 8;
    return (bytes + step - 1) / step * step;
  }

  // The oldest free block of exactly `cap` bytes, or null.
  void* take(size_t cap) {
    if (size_t i = index(cap); i != kNone) {
      if (i >= lists_.size()) return nullptr;
      List& l = lists_[i];
      if (l.head == l.items.size()) return nullptr;
      void* p = l.items[l.head++];
      if (l.head == l.items.size()) {
        l.items.clear();  // keeps the capacity: no allocation on the next put
        l.head = 0;
      }
      return p;
    }
    auto it = odd_.find(cap);
    if (it == odd_.end()) return nullptr;
    void* p = it->second;
    odd_.erase(it);
    return p;
  }

  void put(size_t cap, void* p) {
    if (size_t i = index(cap); i != kNone) {
      if (i >= lists_.size()) lists_.resize(i + 1);
      List& l = lists_[i];
      // Drop the taken front once it is most of the vector, so a list that never empties stays small.
      if (l.head >= 64 && l.head * 2 >= l.items.size()) {
        l.items.erase(l.items.begin(), l.items.begin() + std::ptrdiff_t(l.head));
        l.head = 0;
      }
      l.items.push_back(p);
      return;
    }
    odd_.emplace(cap, p);
  }

  // Calls f(cap, p) for every free block and forgets them all.
  template <typename F>
  void drain(F f) {
    for (size_t i = 0; i < lists_.size(); i++) {
      List& l = lists_[i];
      for (size_t k = l.head; k < l.items.size(); k++) f(capOf(i), l.items[k]);
      l.items.clear();
      l.head = 0;
    }
    for (auto& [cap, p] : odd_) f(cap, p);
    odd_.clear();
  }

 private:
  static constexpr size_t kNone = ~size_t(0);
  static constexpr size_t kSmallClasses = kSmallLimit / kMinBlock;  // 512 B .. 1 MiB - 512 B

  // The list of a class size; kNone for a size no request rounds to (kept in odd_, never expected).
  static size_t index(size_t cap) {
    if (cap < kSmallLimit) return cap && cap % kMinBlock == 0 ? cap / kMinBlock - 1 : kNone;
    const int log = 63 - __builtin_clzll(cap);
    const size_t step = (size_t(1) << log) / 8;
    if (cap % step) return kNone;
    return kSmallClasses - 1 + size_t(log - 20) * 8 + (cap / step - 8);
  }
  static size_t capOf(size_t i) {
    if (i < kSmallClasses - 1) return (i + 1) * kMinBlock;
    const size_t j = i - (kSmallClasses - 1);
    const size_t step = (size_t(1) << (20 + j / 8)) / 8;
    return step * (8 + j % 8);
  }

  struct List {
    std::vector<void*> items;
    size_t head = 0;  // items before it were taken
  };
  std::vector<List> lists_;
  std::multimap<size_t, void*> odd_;
};

}  // namespace mt
