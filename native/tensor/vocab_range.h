// The per-id rule of vocabRange (native/cpu/vocab_range.cc, native/cuda/vocab_range.cu), shared by the
// CPU reference and the device kernel so both classify every id the same way.
#pragma once
#include <cstdint>
#include <string>

#include "util/host_device.h"

namespace mt {

// This rank's rows [start, start + Vl) of a V-row vocabulary; ids equal to `ignore` are skipped.
struct VocabSlice {
  int64_t start, Vl, V, ignore;
};

// local: the row in the slice (0 when another rank holds it or the id is bad; -1 when ignored, the
// ignore value the cross-entropy kernels are then given); here: held by this slice; valid: in
// [0, V) and not ignored. A bad id (outside [0, V), not ignored) is neither here nor valid.
struct VocabEntry {
  int32_t local;
  bool here, valid;
};

MT_HOST_DEVICE VocabEntry vocabEntry(int64_t v, const VocabSlice& s) {
  if (v == s.ignore) return {-1, false, false};
  if (v < 0 || v >= s.V) return {0, false, false};
  const bool here = v >= s.start && v < s.start + s.Vl;
  return {here ? int32_t(v - s.start) : 0, here, true};
}

// Empty when n and the slice are consistent, else what is wrong (the bindings throw it).
inline std::string vocabSliceProblem(int64_t n, const VocabSlice& s) {
  if (n < 0) return "negative length " + std::to_string(n);
  if (s.Vl > INT32_MAX) return "slice of " + std::to_string(s.Vl) + " rows: local indices are i32";
  if (s.start < 0 || s.Vl < 0 || s.start + s.Vl > s.V) {
    return "slice [" + std::to_string(s.start) + ", " + std::to_string(s.start + s.Vl) + ") is not inside [0, " +
           std::to_string(s.V) + ")";
  }
  return "";
}

}  // namespace mt
