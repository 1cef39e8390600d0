#include "cpu/onednn.h"
#include "tensor/storage.h"

#include <cstdlib>
#include <new>

namespace mt {
namespace dnn {

// Leaked on purpose: destroying oneDNN objects during static teardown can race the library's own.
dnnl::engine& engine() {
  static auto* e = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *e;
}

dnnl::stream& stream() {
  static auto* s = new dnnl::stream(engine());
  return *s;
}

std::mutex& execMutex() {
  static std::mutex m;
  return m;
}

Arena& arena() {
  static Arena a;
  return a;
}

namespace {
constexpr size_t kPieceAlign = 64;
size_t roundUp(size_t n) { return (n + kPieceAlign - 1) / kPieceAlign * kPieceAlign; }
}  // namespace

std::vector<void*> Arena::carve(const std::vector<size_t>& sizes) {
  size_t total = 0;
  for (size_t s : sizes) total += roundUp(s);
  if (total > capacity_) {
    std::free(base_);
    base_ = nullptr;
    accountBytes(Tag::Other, 0, -int64_t(capacity_));
    capacity_ = 0;
    // Grow with headroom so a slowly growing sequence of shapes does not reallocate every call.
    size_t want = roundUp(total + total / 4);
    base_ = std::aligned_alloc(kPieceAlign, want);
    if (!base_) throw std::bad_alloc();
    capacity_ = want;
    // The workspace is real memory: memoryStats() shows it under `other`.
    accountBytes(Tag::Other, 0, int64_t(want));
  }
  std::vector<void*> out(sizes.size());
  size_t at = 0;
  for (size_t i = 0; i < sizes.size(); i++) {
    out[i] = sizes[i] ? static_cast<char*>(base_) + at : nullptr;
    at += roundUp(sizes[i]);
  }
  return out;
}

Arena::~Arena() { std::free(base_); }

}  // namespace dnn
}  // namespace mt
