// Shared oneDNN plumbing for the CPU kernels: the engine and stream, dtype mapping, a primitive
// cache keyed by shapes/strides/dtypes, and one reusable arena for scratchpads and staging.
#pragma once
#include <oneapi/dnnl/dnnl.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>
#include "tensor/dtype.h"
#include "tensor/storage.h"

namespace mt {
namespace dnn {

using dt = dnnl::memory::data_type;

dnnl::engine& engine();
dnnl::stream& stream();

// Every oneDNN execution holds this lock: the arena below is shared by all primitives, and the
// cached memory objects are re-pointed per call.
std::mutex& execMutex();

inline const char* dtypeName(DType d) {
  static const char* names[] = {"f32", "f64", "bf16", "f16", "i32", "i64"};
  return names[int(d)];
}

// f32 and bf16 only; other dtypes have no oneDNN path here and the caller says which op failed.
inline bool hasDnnlType(DType d) { return d == DType::F32 || d == DType::BF16; }
inline dt toDnnl(DType d) {
  switch (d) {
    case DType::F32: return dt::f32;
    case DType::BF16: return dt::bf16;
    case DType::F16: return dt::f16;
    case DType::I32: return dt::s32;
    default: throw Error(cat("oneDNN has no type for dtype code ", int(d)));
  }
}

// A cache key: a family tag followed by the integers (dims, strides, dtypes, flags) that decide
// the primitive. Plain vector equality; hashing mixes every word.
struct Key {
  std::vector<int64_t> v;
  explicit Key(int64_t family) { v.reserve(40); v.push_back(family); }
  Key& add(int64_t x) { v.push_back(x); return *this; }
  template <typename It> Key& add(It b, It e) { v.insert(v.end(), b, e); return *this; }
  bool operator==(const Key& o) const { return v == o.v; }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t x : k.v) h = (h ^ uint64_t(x)) * 1099511628211ull;
    return size_t(h ^ (h >> 29));
  }
};

// Least-recently-used map from Key to a built entry. Entries are shared_ptrs, so eviction never
// frees one that a call is using. Callers hold execMutex().
template <typename Entry>
class PrimitiveCache {
 public:
  explicit PrimitiveCache(size_t capacity = 1024) : capacity_(capacity) {}

  template <typename Build>
  std::shared_ptr<Entry> get(const Key& key, Build&& build) {
    auto it = map_.find(key);
    if (it != map_.end()) {
      order_.splice(order_.begin(), order_, it->second.second);
      return it->second.first;
    }
    auto entry = std::make_shared<Entry>(build());
    order_.push_front(key);
    map_.emplace(key, std::make_pair(entry, order_.begin()));
    if (map_.size() > capacity_) {
      map_.erase(order_.back());
      order_.pop_back();
    }
    return entry;
  }
  size_t size() const { return map_.size(); }

 private:
  size_t capacity_;
  std::list<Key> order_;
  std::unordered_map<Key, std::pair<std::shared_ptr<Entry>, std::list<Key>::iterator>, KeyHash> map_;
};

// One growing buffer carved into aligned pieces per call (scratchpad, blocked weights, staged
// activations). Reset at the start of each call; it never shrinks, so steady state allocates
// nothing. Callers hold execMutex().
class Arena {
 public:
  // Pieces for one call: sizes in bytes, returned pointers in the same order.
  std::vector<void*> carve(const std::vector<size_t>& sizes);
  ~Arena();

 private:
  void* base_ = nullptr;
  size_t capacity_ = 0;
};
Arena& arena();

// Whether oneDNN picked its slow reference implementation (then callers try another layout).
inline bool isReference(const dnnl::primitive_desc_base& pd) {
  const char* s = pd.impl_info_str();
  return s && std::string(s).rfind("ref", 0) == 0;
}

// Attributes every cached primitive uses: the scratchpad comes from the arena.
inline dnnl::primitive_attr userScratchpadAttr() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

// The operand's data, bounds-checked with an error that names the op, the operand and its shape.
// Empty operands address nothing, so they get nullptr and no check.
inline void* operandPtr(const char* op, const char* what, int64_t id, int64_t off, int64_t span,
                        size_t item, const std::vector<int64_t>& dims,
                        const std::vector<int64_t>& strides) {
  if (span == 0) return nullptr;
  auto list = [](const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); i++) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  };
  const Storage& st = storageAt(id);
  const int64_t have = int64_t(st.bytes / item);
  MT_CHECK(off >= 0 && off + span <= have, op, ": ", what, " ", list(dims), " with strides ",
           list(strides), " from offset ", off, " reaches element ", off + span, ", but storage ", id,
           " holds ", have, " elements");
  return static_cast<char*>(st.ptr) + off * int64_t(item);
}

// Median seconds of `iters` timed calls after two warm-up calls, for the raw-oneDNN bench peers.
template <typename F>
double medianSeconds(int64_t iters, F&& f) {
  f();
  f();
  std::vector<double> t(size_t(iters > 0 ? iters : 1));
  for (auto& x : t) {
    auto a = std::chrono::steady_clock::now();
    f();
    x = std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

}  // namespace dnn
}  // namespace mt
