// Row helpers for softmax-like kernels: a branch-free float exp that loops vectorize, and
// max/sum reductions over fixed lanes (independent accumulators, so the compiler vectorizes
// them without reassociating, and the result does not depend on the thread count).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>
#include "tensor/dtype.h"

namespace mt {

constexpr int kLanes = 16;

// Per-thread scratch rows (a few per thread, grown on demand, never shrunk).
template <typename C>
C* scratch(int64_t n, int slot) {
  thread_local std::vector<C> bufs[3];
  std::vector<C>& b = bufs[slot];
  if (int64_t(b.size()) < n) b.resize(size_t(n));
  return b.data();
}

inline uint32_t floatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// exp(x) for x <= 80 (softmax's x - max <= 0) within 1 ulp; 0 below -87.3 (where exp is a
// float denormal); NaN stays NaN. x = n·ln2 + r with |r| <= ln2/2, exp(r) by its Taylor series
// to r^7 (error < 6e-9). Selects are integer bit masks: float selects become branches that
// stop the loop from vectorizing.
inline float expFloat(float x) {
  const uint32_t inRange = 0u - uint32_t(x >= -87.3f);  // all ones, or 0 below -87.3 and for NaN
  const uint32_t isNan = 0u - uint32_t(x != x);
  const float t = bitsFloat((floatBits(x) & inRange) | (floatBits(-87.3f) & ~inRange));
  // Round to nearest by the 1.5·2^23 trick: plain arithmetic.
  const float n = (t * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = std::fma(n, -1.42860682e-6f, std::fma(n, -6.93145752e-1f, t));  // t - n·ln2, ln2 = hi + lo
  float p = 1.0f / 5040;
  p = std::fma(p, r, 1.0f / 720);
  p = std::fma(p, r, 1.0f / 120);
  p = std::fma(p, r, 1.0f / 24);
  p = std::fma(p, r, 1.0f / 6);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  const float e = p * bitsFloat(uint32_t(int32_t(n) + 127) << 23);  // p · 2^n, n in [-126, 116]
  return bitsFloat((floatBits(e) & inRange) | (floatBits(x) & isNan));
}

inline double expOf(double x) { return std::exp(x); }
inline float expOf(float x) { return expFloat(x); }

// max of p[0, n)
template <typename C>
C laneMax(const C* p, int64_t n) {
  C acc[kLanes];
  for (int l = 0; l < kLanes; l++) acc[l] = -std::numeric_limits<C>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; l++) acc[l] = acc[l] < p[j + l] ? p[j + l] : acc[l];
  C m = -std::numeric_limits<C>::infinity();
  for (int l = 0; l < kLanes; l++) m = m < acc[l] ? acc[l] : m;
  for (; j < n; j++) m = m < p[j] ? p[j] : m;
  return m;
}

// sum of exp(p[j] - shift) over [0, n), accumulated in double
template <typename C>
double laneSumExp(const C* p, int64_t n, C shift) {
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; l++) acc[l] += double(expOf(C(p[j + l] - shift)));
  double s = 0;
  for (int l = 0; l < kLanes; l++) s += acc[l];
  for (; j < n; j++) s += double(expOf(C(p[j] - shift)));
  return s;
}

// p[j] = exp(p[j] - shift) in place; returns their sum, accumulated in double
template <typename C>
double laneExpInPlace(C* p, int64_t n, C shift) {
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; l++) {
      p[j + l] = expOf(C(p[j + l] - shift));
      acc[l] += double(p[j + l]);
    }
  double s = 0;
  for (int l = 0; l < kLanes; l++) s += acc[l];
  for (; j < n; j++) {
    p[j] = expOf(C(p[j] - shift));
    s += double(p[j]);
  }
  return s;
}

// sum of a[j] over [0, n), accumulated in double
template <typename C>
double laneSum(const C* a, int64_t n) {
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; l++) acc[l] += double(a[j + l]);
  double s = 0;
  for (int l = 0; l < kLanes; l++) s += acc[l];
  for (; j < n; j++) s += double(a[j]);
  return s;
}

// sum of a[j] * b[j] over [0, n), accumulated in double
template <typename C>
double laneDot(const C* a, const C* b, int64_t n) {
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; l++) acc[l] += double(a[j + l]) * double(b[j + l]);
  double s = 0;
  for (int l = 0; l < kLanes; l++) s += acc[l];
  for (; j < n; j++) s += double(a[j]) * double(b[j]);
  return s;
}

// sum of (a[j] - mu)^2 over [0, n), in double
template <typename C>
double laneSqDev(const C* a, int64_t n, double mu) {
  double acc[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; l++) {
      const double d = double(a[j + l]) - mu;
      acc[l] += d * d;
    }
  double s = 0;
  for (int l = 0; l < kLanes; l++) s += acc[l];
  for (; j < n; j++) {
    const double d = double(a[j]) - mu;
    s += d * d;
  }
  return s;
}

// A row in the compute type: `p` itself for f32/f64, else widened into this thread's
// scratch buffer `slot` (0 or 1), which stays valid until the next call with that slot.
template <typename T>
const typename Compute<T>::type* computeRow(const T* p, int64_t n, int slot) {
  using C = typename Compute<T>::type;
  if constexpr (std::is_same_v<T, C>) {
    return p;
  } else {
    C* buf = scratch<C>(n, slot);
    for (int64_t j = 0; j < n; j++) buf[j] = load(p + j);
    return buf;
  }
}

}  // namespace mt
