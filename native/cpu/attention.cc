// Fused scaled-dot-product attention on the CPU, forward and backward: the CPU twin of
// native/cuda/attention.cu, with the same binding arguments. Operands are [batch, heads, T, D]
// views with any batch, head and position strides and unit stride along D, so q, k, v are read in
// place from a fused qkv projection and the output and dq, dk, dv are written straight into
// their layouts (src/ops/attention_qkv.ts): no layout copy, and never the [T, T] scores. Tasks own
// 32 rows (queries forward and for dQ, keys for dK/dV) and stream 32-row tiles of the other side,
// widened to the compute type (f64: double, else float); the forward keeps an online softmax and
// stores each query row's log-sum-exp, the backward recomputes the probabilities from it. Each
// output row is summed by one task in a fixed order: deterministic, no atomics. Slower than the
// composed ops' oneDNN matmuls (bench/cpu_attention.ts), so ops take it only when asked
// (MESHTRAIN_ATTENTION_CPU=fused).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>
#include "cpu/rowmath.h"
#include "tensor/attention_args.h"
#include "tensor/storage.h"
#include "util/args.h"
#include "util/parallel.h"

namespace mt {
namespace {

using Geom = AttnGeom;
using Strides = AttnStrides;

constexpr int kDotLanes = 8;
constexpr int kTile = 32;  // rows of a task's block and of a streamed tile

// sum of a[d] * b[d] over d < n, in C over fixed lanes
template <typename C, typename T>
inline C dotRow(const C* a, const T* b, int64_t n) {
  C acc[kDotLanes] = {};
  int64_t d = 0;
  for (; d + kDotLanes <= n; d += kDotLanes)
    for (int l = 0; l < kDotLanes; l++) acc[l] += a[d + l] * C(load(b + d + l));
  C s = 0;
  for (int l = 0; l < kDotLanes; l++) s += acc[l];
  for (; d < n; d++) s += a[d] * C(load(b + d));
  return s;
}

inline int64_t visibleKeys(const Geom& g, int64_t i) { return g.causal ? std::min(g.tk, i + 1) : g.tk; }

// How many of the key tile's kTile lanes from k0 query i sees (0 to kTile).
inline int seenInTile(const Geom& g, int64_t i, int64_t k0) {
  return int(std::min<int64_t>(kTile, std::max<int64_t>(0, visibleKeys(g, i) - k0)));
}

// The key rows that query rows [q0, q0 + n) see at all: causal stops at the block's last query.
inline int64_t keyEnd(const Geom& g, int64_t q0, int n) { return g.causal ? std::min(g.tk, q0 + n) : g.tk; }

template <typename P>
inline P* headOf(P* p, const Strides& s, int64_t bh, int64_t heads) {
  return p + (bh / heads) * s.b + (bh % heads) * s.h;
}

// Rows [t0, t0 + kTile) of one head (row t at base + t * ts) in the compute type, rows at or past
// `limit` as 0: row-major into `rows` [kTile][D] and/or transposed into `cols` [D][kTile].
template <typename C, typename T>
void loadTile(C* rows, C* cols, const T* base, int64_t ts, int64_t t0, int64_t limit, int64_t D) {
  for (int r = 0; r < kTile; r++) {
    const int64_t t = t0 + r;
    if (t < limit) {
      const T* src = base + t * ts;
      if (rows)
        for (int64_t d = 0; d < D; d++) rows[r * D + d] = load(src + d);
      if (cols)
        for (int64_t d = 0; d < D; d++) cols[d * kTile + r] = rows ? rows[r * D + d] : C(load(src + d));
    } else {
      if (rows) std::fill(rows + r * D, rows + (r + 1) * D, C(0));
      if (cols)
        for (int64_t d = 0; d < D; d++) cols[d * kTile + r] = 0;
    }
  }
}

// 32-byte vectors of the compute type (GCC/Clang vector extension): accumulators the compiler
// keeps in registers, where plain arrays went through the stack.
template <typename C>
struct Vec {
  typedef C type __attribute__((vector_size(32)));
  static constexpr int lanes = int(32 / sizeof(C));
};
template <typename V, typename C>
inline V loadVec(const C* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename C>
inline void storeVec(C* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

// out[r][c] = sum_d a[r][d] * bt[d][c] for r < n (a row-major [n][D], bt [D][kTile]): c is the
// vector lane, so there is no horizontal sum. DC: the head dim when known at compile time, else 0.
template <int DC, typename C>
void productNT(C* __restrict out, const C* __restrict a, const C* __restrict bt, int n, int64_t dim) {
  using V = typename Vec<C>::type;
  constexpr int L = Vec<C>::lanes, NV = kTile / L;
  const int64_t D = DC ? DC : dim;
  for (int r = 0; r < n; r++) {
    V acc[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) acc[v] = V{};
    const C* ar = a + r * D;
    for (int64_t d = 0; d < D; d++) {
      const V x = V{} + ar[d];
      const C* b = bt + d * kTile;
#pragma GCC unroll 8
      for (int v = 0; v < NV; v++) acc[v] += x * loadVec<V>(b + v * L);
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) storeVec(out + r * kTile + v * L, acc[v]);
  }
}

// acc[r][d] += sum_c p[r][c] * b[c][d] for r < n (p [n][kTile], b row-major [kTile][D]); with a
// compile-time D the row's accumulators stay in registers across the tile.
template <int DC, typename C>
void productAcc(C* __restrict acc, const C* __restrict p, const C* __restrict b, int n, int64_t dim) {
  using V = typename Vec<C>::type;
  constexpr int L = Vec<C>::lanes;
  const int64_t D = DC ? DC : dim;
  for (int r = 0; r < n; r++) {
    C* o = acc + r * D;
    if constexpr (DC > 0 && DC % L == 0) {
      constexpr int NV = DC / L;
      V row[NV];
#pragma GCC unroll 16
      for (int v = 0; v < NV; v++) row[v] = loadVec<V>(o + v * L);
      for (int c = 0; c < kTile; c++) {
        const V x = V{} + p[r * kTile + c];
        const C* br = b + c * DC;
#pragma GCC unroll 16
        for (int v = 0; v < NV; v++) row[v] += x * loadVec<V>(br + v * L);
      }
#pragma GCC unroll 16
      for (int v = 0; v < NV; v++) storeVec(o + v * L, row[v]);
    } else {
      for (int c = 0; c < kTile; c++) {
        const C x = p[r * kTile + c];
        const C* br = b + c * D;
        for (int64_t d = 0; d < D; d++) o[d] += x * br[d];
      }
    }
  }
}

// Per-thread tiles of the compute type (grown on demand, never shrunk; a few times kTile * D).
template <typename C>
C* tiles(int64_t n) {
  thread_local std::vector<C> buf;
  if (int64_t(buf.size()) < n) buf.resize(size_t(n));
  return buf.data();
}

inline int64_t blocks(int64_t t) { return (t + kTile - 1) / kTile; }

// s[c] = exp(s[c] - shift) over one tile row; returns their sum
template <typename C>
inline C expTile(C* s, C shift) {
  C sum = 0;
  for (int c = 0; c < kTile; c++) {
    s[c] = expOf(C(s[c] - shift));
    sum += s[c];
  }
  return sum;
}

// o = softmax(scale * q kᵀ [+ mask]) v and lse per query row (row = bh * tq + i): one task per
// block of kTile query rows, key tiles streamed with an online softmax.
template <typename T, int DC>
void forwardKernel(const Geom& g, const T* q, Strides qs, const T* k, Strides ks, const T* v, Strides vs, T* o,
                   Strides os, typename Compute<T>::type* lse) {
  using C = typename Compute<T>::type;
  const int64_t D = DC ? DC : g.dim, nb = blocks(g.tq);
  const C scale = C(g.scale), negInf = -std::numeric_limits<C>::infinity();
  parallelFor(g.batch * g.heads * nb, kTile * g.tk * D * 2, [&](int64_t task) {
    const int64_t bh = task / nb, q0 = (task % nb) * kTile;
    const int n = int(std::min<int64_t>(kTile, g.tq - q0));
    C* qc = tiles<C>(4 * kTile * D + kTile * kTile + 2 * kTile);
    C* acc = qc + kTile * D;
    C* kt = acc + kTile * D;
    C* vc = kt + kTile * D;
    C* sc = vc + kTile * D;
    C* m = sc + kTile * kTile;
    C* l = m + kTile;
    loadTile<C>(qc, nullptr, headOf(q, qs, bh, g.heads), qs.t, q0, g.tq, D);
    std::fill(acc, acc + kTile * D, C(0));
    std::fill(m, m + kTile, negInf);
    std::fill(l, l + kTile, C(0));
    const T* kh = headOf(k, ks, bh, g.heads);
    const T* vh = headOf(v, vs, bh, g.heads);
    const int64_t kEnd = keyEnd(g, q0, n);
    for (int64_t k0 = 0; k0 < kEnd; k0 += kTile) {
      loadTile<C>(nullptr, kt, kh, ks.t, k0, g.tk, D);
      loadTile<C>(vc, nullptr, vh, vs.t, k0, g.tk, D);
      productNT<DC>(sc, qc, kt, n, D);
      for (int r = 0; r < n; r++) {
        C* s = sc + r * kTile;
        const int seen = seenInTile(g, q0 + r, k0);
        for (int c = 0; c < kTile; c++) s[c] = c < seen ? s[c] * scale : negInf;
        if (seen == 0) {
          std::fill(s, s + kTile, C(0));
          continue;
        }
        const C mNew = std::max(m[r], laneMax(s, kTile));
        const C alpha = m[r] == negInf ? C(0) : expOf(C(m[r] - mNew));
        l[r] = l[r] * alpha + expTile(s, mNew);  // masked lanes: exp(-inf) = 0
        m[r] = mNew;
        for (int64_t d = 0; d < D; d++) acc[r * D + d] *= alpha;
      }
      productAcc<DC>(acc, sc, vc, n, D);
    }
    for (int r = 0; r < n; r++) {
      const int64_t i = q0 + r;
      const C inv = l[r] > 0 ? C(1) / l[r] : C(0);  // no keys: zeros
      T* orow = headOf(o, os, bh, g.heads) + i * os.t;
      for (int64_t d = 0; d < D; d++) store(orow + d, acc[r * D + d] * inv);
      lse[bh * g.tq + i] = l[r] > 0 ? C(double(m[r]) + std::log(double(l[r]))) : negInf;
    }
  });
}

// dot(dO, o) per query row, the softmax backward's row term.
template <typename T>
void rowDots(const Geom& g, const T* o, Strides os, const T* dO, Strides gs, typename Compute<T>::type* dots) {
  using C = typename Compute<T>::type;
  const int64_t D = g.dim;
  parallelFor(g.batch * g.heads * g.tq, D * 2, [&](int64_t row) {
    const int64_t bh = row / g.tq, i = row % g.tq;
    C* gc = tiles<C>(D);
    const T* grow = headOf(dO, gs, bh, g.heads) + i * gs.t;
    for (int64_t d = 0; d < D; d++) gc[d] = load(grow + d);
    dots[row] = dotRow(gc, headOf(o, os, bh, g.heads) + i * os.t, D);
  });
}

// dQ = scale · dS K with dS = P ∘ (dP - dot(dO, o)): one task per block of kTile query rows.
template <typename T, int DC>
void backwardQ(const Geom& g, const T* q, Strides qs, const T* k, Strides ks, const T* v, Strides vs, const T* dO,
               Strides gs, const typename Compute<T>::type* lse, const typename Compute<T>::type* dots, T* dq,
               Strides dqs) {
  using C = typename Compute<T>::type;
  const int64_t D = DC ? DC : g.dim, nb = blocks(g.tq);
  const C scale = C(g.scale), negInf = -std::numeric_limits<C>::infinity();
  parallelFor(g.batch * g.heads * nb, kTile * g.tk * D * 3, [&](int64_t task) {
    const int64_t bh = task / nb, q0 = (task % nb) * kTile;
    const int n = int(std::min<int64_t>(kTile, g.tq - q0));
    C* qc = tiles<C>(6 * kTile * D + 2 * kTile * kTile);
    C* gc = qc + kTile * D;
    C* acc = gc + kTile * D;
    C* kc = acc + kTile * D;
    C* kt = kc + kTile * D;
    C* vt = kt + kTile * D;
    C* sc = vt + kTile * D;
    C* dp = sc + kTile * kTile;
    loadTile<C>(qc, nullptr, headOf(q, qs, bh, g.heads), qs.t, q0, g.tq, D);
    loadTile<C>(gc, nullptr, headOf(dO, gs, bh, g.heads), gs.t, q0, g.tq, D);
    std::fill(acc, acc + kTile * D, C(0));
    const T* kh = headOf(k, ks, bh, g.heads);
    const T* vh = headOf(v, vs, bh, g.heads);
    const int64_t kEnd = keyEnd(g, q0, n);
    for (int64_t k0 = 0; k0 < kEnd; k0 += kTile) {
      loadTile<C>(kc, kt, kh, ks.t, k0, g.tk, D);
      loadTile<C>(nullptr, vt, vh, vs.t, k0, g.tk, D);
      productNT<DC>(sc, qc, kt, n, D);
      productNT<DC>(dp, gc, vt, n, D);
      for (int r = 0; r < n; r++) {
        const int64_t row = bh * g.tq + q0 + r;
        const int seen = seenInTile(g, q0 + r, k0);
        C* s = sc + r * kTile;
        const C* dpr = dp + r * kTile;
        const C l = lse[row], di = dots[row];
        // Masked lanes as exp(-inf) = 0: a select the loop vectorizes, no exp of a hidden score.
        for (int c = 0; c < kTile; c++) s[c] = c < seen ? s[c] * scale - l : negInf;
        for (int c = 0; c < kTile; c++) s[c] = expOf(s[c]) * (dpr[c] - di) * scale;
      }
      productAcc<DC>(acc, sc, kc, n, D);
    }
    for (int r = 0; r < n; r++) {
      T* row = headOf(dq, dqs, bh, g.heads) + (q0 + r) * dqs.t;
      for (int64_t d = 0; d < D; d++) store(row + d, acc[r * D + d]);
    }
  });
}

// dK = scale · dSᵀ Q and dV = Pᵀ dO: one task per block of kTile key rows, query tiles streamed.
template <typename T, int DC>
void backwardKV(const Geom& g, const T* q, Strides qs, const T* k, Strides ks, const T* v, Strides vs, const T* dO,
                Strides gs, const typename Compute<T>::type* lse, const typename Compute<T>::type* dots, T* dk,
                Strides dks, T* dv, Strides dvs) {
  using C = typename Compute<T>::type;
  const int64_t D = DC ? DC : g.dim, nb = blocks(g.tk);
  const C scale = C(g.scale), negInf = -std::numeric_limits<C>::infinity();
  parallelFor(g.batch * g.heads * nb, kTile * g.tq * D * 4, [&](int64_t task) {
    const int64_t bh = task / nb, k0 = (task % nb) * kTile;
    const int n = int(std::min<int64_t>(kTile, g.tk - k0));
    C* kc = tiles<C>(8 * kTile * D + 2 * kTile * kTile + 2 * kTile);
    C* vc = kc + kTile * D;
    C* dkAcc = vc + kTile * D;
    C* dvAcc = dkAcc + kTile * D;
    C* qr = dvAcc + kTile * D;
    C* qt = qr + kTile * D;
    C* gr = qt + kTile * D;
    C* gt = gr + kTile * D;
    C* st = gt + kTile * D;  // Pᵀ, then dSᵀ
    C* pt = st + kTile * kTile;
    C* lseT = pt + kTile * kTile;  // the query tile's lse and dot(dO, o)
    C* dotT = lseT + kTile;
    loadTile<C>(kc, nullptr, headOf(k, ks, bh, g.heads), ks.t, k0, g.tk, D);
    loadTile<C>(vc, nullptr, headOf(v, vs, bh, g.heads), vs.t, k0, g.tk, D);
    std::fill(dkAcc, dkAcc + 2 * kTile * D, C(0));
    const T* qh = headOf(q, qs, bh, g.heads);
    const T* gh = headOf(dO, gs, bh, g.heads);
    // Causal: queries before k0 see none of these keys (k0 is a multiple of the tile).
    for (int64_t i0 = g.causal ? k0 : 0; i0 < g.tq; i0 += kTile) {
      loadTile<C>(qr, qt, qh, qs.t, i0, g.tq, D);
      loadTile<C>(gr, gt, gh, gs.t, i0, g.tq, D);
      productNT<DC>(st, kc, qt, n, D);  // Sᵀ
      productNT<DC>(pt, vc, gt, n, D);  // dPᵀ
      const int cEnd = int(std::min<int64_t>(kTile, g.tq - i0));  // queries past tq: masked
      for (int c = 0; c < kTile; c++) {
        lseT[c] = c < cEnd ? lse[bh * g.tq + i0 + c] : C(0);
        dotT[c] = c < cEnd ? dots[bh * g.tq + i0 + c] : C(0);
      }
      for (int r = 0; r < n; r++) {
        // Key j is seen by queries i >= j (causal) below tq: lanes [cBegin, cEnd).
        const int cBegin = g.causal ? int(std::clamp<int64_t>(k0 + r - i0, 0, kTile)) : 0;
        C* s = st + r * kTile;
        C* dpr = pt + r * kTile;
        for (int c = 0; c < kTile; c++) s[c] = c >= cBegin && c < cEnd ? s[c] * scale - lseT[c] : negInf;
        for (int c = 0; c < kTile; c++) {
          const C p = expOf(s[c]);
          s[c] = p;
          dpr[c] = p * (dpr[c] - dotT[c]) * scale;
        }
      }
      productAcc<DC>(dvAcc, st, gr, n, D);
      productAcc<DC>(dkAcc, pt, qr, n, D);
    }
    for (int r = 0; r < n; r++) {
      T* krow = headOf(dk, dks, bh, g.heads) + (k0 + r) * dks.t;
      T* vrow = headOf(dv, dvs, bh, g.heads) + (k0 + r) * dvs.t;
      for (int64_t d = 0; d < D; d++) {
        store(krow + d, dkAcc[r * D + d]);
        store(vrow + d, dvAcc[r * D + d]);
      }
    }
  });
}

// The kernels for GPT's head dims with the dim known at compile time (registers), others generic.
#define MT_ATTN_DIM(DIM, ...)                                  \
  switch (DIM) {                                               \
    case 32: { constexpr int DC = 32; __VA_ARGS__; break; }    \
    case 64: { constexpr int DC = 64; __VA_ARGS__; break; }    \
    case 128: { constexpr int DC = 128; __VA_ARGS__; break; }  \
    default: { constexpr int DC = 0; __VA_ARGS__; break; }     \
  }

// Operands and geometry are read by tensor/attention_args.h, as the CUDA bindings read them.
using View = AttnView;

// The CPU address of a view of `t` positions, bounds-checked over its whole span.
template <typename T>
T* viewPtr(const View& v, const Geom& g, int64_t t) {
  return dataPtr<T>(v.id, v.off, attnViewSpan(v.s, g, t));
}

// Results are written while operands are read: refuse a result sharing an operand's storage.
void checkDistinct(const char* op, std::initializer_list<const View*> outs, std::initializer_list<const View*> ins) {
  for (const View* o : outs)
    for (const View* i : ins)
      MT_CHECK(o->id != i->id, op, ": an output shares storage ", o->id, " with an input");
}

// attentionForward(dtype, batch, heads, tq, tk, dim, scale, causal, q(id, off, strides), k(...),
//                  v(...), o(...), lseId): lse is a [batch * heads * tq] storage (f64 for f64, else f32).
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  const char* op = "scaledDotProductAttention";
  DType d = toDType(int(argInt(info, 0)));
  Geom g = attnGeomArg(info, op);
  View q = attnViewArg(info, 8, op, "q"), k = attnViewArg(info, 11, op, "k"), v = attnViewArg(info, 14, op, "v"),
       o = attnViewArg(info, 17, op, "o");
  const int64_t lseId = argInt(info, 20);
  checkDistinct(op, {&o}, {&q, &k, &v});
  const int64_t rows = g.batch * g.heads * g.tq;
  MT_DISPATCH_FLOAT(d, op, {
    using C = typename Compute<T>::type;
    MT_ATTN_DIM(g.dim, forwardKernel<T, DC>(g, viewPtr<T>(q, g, g.tq), q.s, viewPtr<T>(k, g, g.tk), k.s,
                                            viewPtr<T>(v, g, g.tk), v.s, viewPtr<T>(o, g, g.tq), o.s,
                                            dataPtr<C>(lseId, 0, rows)));
  });
  return info.Env().Undefined();
}

// attentionBackward(dtype, batch, heads, tq, tk, dim, scale, causal, q, k, v, o, dO (each id, off,
// strides), lseId, dq, dk, dv (each id, off, strides), dotsId): dq, dk, dv are overwritten;
// dotsId is a [batch * heads * tq] scratch storage of lse's dtype (the per-row dot(dO, o)).
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  const char* op = "scaledDotProductAttention backward";
  DType d = toDType(int(argInt(info, 0)));
  Geom g = attnGeomArg(info, op);
  View q = attnViewArg(info, 8, op, "q"), k = attnViewArg(info, 11, op, "k"), v = attnViewArg(info, 14, op, "v"),
       o = attnViewArg(info, 17, op, "o"), dO = attnViewArg(info, 20, op, "the output gradient");
  const int64_t lseId = argInt(info, 23);
  View dq = attnViewArg(info, 24, op, "dq"), dk = attnViewArg(info, 27, op, "dk"), dv = attnViewArg(info, 30, op, "dv");
  MT_CHECK(info.Length() > 33, op, ": needs a scratch storage for the row terms (argument 34)");
  const int64_t dotsId = argInt(info, 33);
  checkDistinct(op, {&dq, &dk, &dv}, {&q, &k, &v, &o, &dO});
  const int64_t rows = g.batch * g.heads * g.tq;
  MT_DISPATCH_FLOAT(d, op, {
    using C = typename Compute<T>::type;
    const C* lse = dataPtr<C>(lseId, 0, rows);
    C* dots = dataPtr<C>(dotsId, 0, rows);
    const T* qp = viewPtr<T>(q, g, g.tq);
    const T* kp = viewPtr<T>(k, g, g.tk);
    const T* vp = viewPtr<T>(v, g, g.tk);
    const T* gp = viewPtr<T>(dO, g, g.tq);
    rowDots<T>(g, viewPtr<T>(o, g, g.tq), o.s, gp, dO.s, dots);
    T* dqp = viewPtr<T>(dq, g, g.tq);
    T* dkp = viewPtr<T>(dk, g, g.tk);
    T* dvp = viewPtr<T>(dv, g, g.tk);
    MT_ATTN_DIM(g.dim, {
      backwardQ<T, DC>(g, qp, q.s, kp, k.s, vp, v.s, gp, dO.s, lse, dots, dqp, dq.s);
      backwardKV<T, DC>(g, qp, q.s, kp, k.s, vp, v.s, gp, dO.s, lse, dots, dkp, dk.s, dvp, dv.s);
    });
  });
  return info.Env().Undefined();
}

}  // namespace

void registerAttention(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "attentionForward", AttentionForward);
  MT_EXPORT(exports, "attentionBackward", AttentionBackward);
}

}  // namespace mt
