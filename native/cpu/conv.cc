// Conv2d (any groups and dilation): forward, backward-data and backward-weights. oneDNN for f32 and
// bf16 with its own ("any") weight layout, reordered to and from our plain [O, C / groups, kh, kw]
// (oneDNN's grouped goihw: the same bytes, [G, O / G, C / G, kh, kw]);
// activations keep the caller's strides when they are dense NCHW or NHWC. Plain loops for f64.
#include <algorithm>
#include <array>
#include <vector>
#include "cpu/onednn.h"
#include "cpu/reference.h"
#include "tensor/storage.h"
#include "util/args.h"
#include "util/strided.h"

namespace mt {
namespace {

using dnnl::memory;
using Dims4 = std::array<int64_t, 4>;

enum Prop { kForward = 10, kBackwardData = 11, kBackwardWeights = 12 };  // also cache families
enum Layout { kNCHW = 1, kNHWC = 2 };

const char* propName(Prop p) {
  return p == kForward ? "conv2dForward" : p == kBackwardData ? "conv2dBackwardData" : "conv2dBackwardWeights";
}

Dims4 denseStrides(const Dims4& d, Layout l) {
  if (l == kNCHW) return {d[1] * d[2] * d[3], d[2] * d[3], d[3], 1};
  return {d[2] * d[3] * d[1], 1, d[3] * d[1], d[1]};
}

// Which dense layouts (bit mask of Layout) the strides match; size-1 dims match anything.
int layoutsOf(const Dims4& d, const Dims4& s) {
  int mask = 0;
  for (Layout l : {kNCHW, kNHWC}) {
    Dims4 want = denseStrides(d, l);
    bool ok = true;
    for (int k = 0; k < 4; k++) ok = ok && (d[k] == 1 || s[k] == want[k]);
    if (ok) mask |= l;
  }
  return mask;
}

// An activation as the caller holds it: logical [N, C, H, W] dims and element strides.
struct Act {
  Dims4 dims, strides;
};

// One memory argument of a primitive: the caller's buffer, what the primitive reads or writes,
// and the reorder between them when the two layouts differ (staging lives in the arena).
struct Slot {
  int arg;
  bool output;
  memory user, prim;
  dnnl::reorder convert;
  bool converts = false;
  size_t primBytes = 0;
};

struct ConvEntry {
  dnnl::primitive prim;
  std::vector<Slot> slots;
  memory scratch;
  size_t scratchBytes = 0;
  std::unordered_map<int, memory> args;
};

dnn::PrimitiveCache<ConvEntry>& convCache() {
  static auto* c = new dnn::PrimitiveCache<ConvEntry>();
  return *c;
}

Slot makeSlot(int arg, bool output, const memory::desc& user, const memory::desc& prim) {
  auto& eng = dnn::engine();
  Slot s{arg, output, memory(user, eng, DNNL_MEMORY_NONE), {}, {}};
  if (user == prim) {
    s.prim = s.user;
  } else {
    s.prim = memory(prim, eng, DNNL_MEMORY_NONE);
    s.convert = output ? dnnl::reorder(s.prim, s.user) : dnnl::reorder(s.user, s.prim);
    s.converts = true;
    s.primBytes = prim.get_size();
  }
  return s;
}

memory::dims vec(const Dims4& a) { return memory::dims(a.begin(), a.end()); }

// The caller's memory as oneDNN sees it. When it matches the primitive's dense layout, the very
// same desc (so no reorder); otherwise its own strides, with size-1 dims moved outermost.
memory::desc userDesc(const Act& a, dnn::dt t, Layout internal) {
  if (layoutsOf(a.dims, a.strides) & internal) return memory::desc(vec(a.dims), t, vec(denseStrides(a.dims, internal)));
  Dims4 s = a.strides;
  int64_t outer = 1;
  for (int k = 0; k < 4; k++) outer = std::max(outer, a.dims[k] * a.strides[k]);
  for (int k = 0; k < 4; k++)
    if (a.dims[k] == 1) s[k] = outer;
  return memory::desc(vec(a.dims), t, vec(s));
}

memory::desc primDesc(const Act& a, dnn::dt t, Layout internal) {
  return memory::desc(vec(a.dims), t, vec(denseStrides(a.dims, internal)));
}

struct ConvProblem {
  Prop prop;
  ref::ConvShape s;
  DType d;
  Act acts[2];  // forward: x, y; backward-data: gradOut, gradIn; backward-weights: x, gradOut
  bool bias;    // forward: bias; backward-weights: gradBias
};

void finish(ConvEntry& e, const dnnl::primitive_desc_base& pd) {
  e.scratch = memory(pd.scratchpad_desc(), dnn::engine(), DNNL_MEMORY_NONE);
  e.scratchBytes = pd.scratchpad_desc().get_size();
  for (auto& slot : e.slots) e.args[slot.arg] = slot.prim;
  e.args[DNNL_ARG_SCRATCHPAD] = e.scratch;
}

// Builds the primitive with activations in `layout`; `reference` reports whether oneDNN could
// only offer its slow reference code for it.
ConvEntry buildConv(const ConvProblem& p, Layout layout, bool& reference) {
  const auto& s = p.s;
  auto& eng = dnn::engine();
  const dnn::dt t = dnn::toDnnl(p.d);
  // oneDNN counts dilation from 0 (taps adjacent) where PyTorch counts from 1.
  const memory::dims strides{s.sh, s.sw}, pad{s.ph, s.pw}, dil{s.dh - 1, s.dw - 1};
  const bool grouped = s.G > 1;
  const memory::dims wDims = grouped ? memory::dims{s.G, s.O / s.G, s.C / s.G, s.kh, s.kw}
                                     : memory::dims{s.O, s.C, s.kh, s.kw};
  const memory::desc wUser(wDims, t, grouped ? memory::format_tag::goihw : memory::format_tag::oihw);
  const memory::desc biasMd({s.O}, dnn::dt::f32, memory::format_tag::x);
  const memory::desc none;
  memory::desc u0 = userDesc(p.acts[0], t, layout), u1 = userDesc(p.acts[1], t, layout);
  memory::desc i0 = primDesc(p.acts[0], t, layout), i1 = primDesc(p.acts[1], t, layout);
  auto attr = dnn::userScratchpadAttr();
  auto fwdDesc = [&](const memory::desc& src, const memory::desc& dst, bool bias) {
    memory::desc wAny(wDims, t, memory::format_tag::any);
    return bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                  dnnl::algorithm::convolution_direct, src, wAny,
                                                  biasMd, dst, strides, dil, pad, pad)
                : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                  dnnl::algorithm::convolution_direct, src, wAny,
                                                  dst, strides, dil, pad, pad);
  };
  ConvEntry e;
  if (p.prop == kForward) {
    dnnl::convolution_forward::primitive_desc pd(fwdDesc(i0, i1, p.bias), attr, eng);
    reference = dnn::isReference(pd);
    e.prim = dnnl::convolution_forward(pd);
    e.slots.push_back(makeSlot(DNNL_ARG_SRC, false, u0, i0));
    e.slots.push_back(makeSlot(DNNL_ARG_WEIGHTS, false, wUser, pd.weights_desc()));
    if (p.bias) e.slots.push_back(makeSlot(DNNL_ARG_BIAS, false, biasMd, biasMd));
    e.slots.push_back(makeSlot(DNNL_ARG_DST, true, u1, i1));
    finish(e, pd);
  } else if (p.prop == kBackwardData) {
    dnnl::convolution_forward::primitive_desc hint(fwdDesc(i1, i0, false), eng);
    memory::desc wAny(wDims, t, memory::format_tag::any);
    dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, i1, wAny, i0,
                                               strides, dil, pad, pad);
    dnnl::convolution_backward_data::primitive_desc pd(desc, attr, eng, hint);
    reference = dnn::isReference(pd);
    e.prim = dnnl::convolution_backward_data(pd);
    e.slots.push_back(makeSlot(DNNL_ARG_DIFF_DST, false, u0, i0));
    e.slots.push_back(makeSlot(DNNL_ARG_WEIGHTS, false, wUser, pd.weights_desc()));
    e.slots.push_back(makeSlot(DNNL_ARG_DIFF_SRC, true, u1, i1));
    finish(e, pd);
  } else {
    // Weight gradients accumulate in f32 inside oneDNN (bf16 too) and are rounded once on reorder.
    dnnl::convolution_forward::primitive_desc hint(fwdDesc(i0, i1, p.bias), eng);
    memory::desc dwAny(wDims, dnn::dt::f32, memory::format_tag::any);
    auto desc = p.bias ? dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct,
                                                                  i0, dwAny, biasMd, i1, strides, dil, pad, pad)
                       : dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct,
                                                                  i0, dwAny, i1, strides, dil, pad, pad);
    dnnl::convolution_backward_weights::primitive_desc pd(desc, attr, eng, hint);
    reference = dnn::isReference(pd);
    e.prim = dnnl::convolution_backward_weights(pd);
    e.slots.push_back(makeSlot(DNNL_ARG_SRC, false, u0, i0));
    e.slots.push_back(makeSlot(DNNL_ARG_DIFF_DST, false, u1, i1));
    e.slots.push_back(makeSlot(DNNL_ARG_DIFF_WEIGHTS, true, wUser, pd.diff_weights_desc()));
    if (p.bias) e.slots.push_back(makeSlot(DNNL_ARG_DIFF_BIAS, true, biasMd, biasMd));
    finish(e, pd);
  }
  return e;
}

// Both activations in one dense layout keep it (NHWC preferred when both fit); anything else,
// or a layout oneDNN only has reference code for, runs in NHWC with the odd ones staged.
ConvEntry buildBest(const ConvProblem& p) {
  int common = layoutsOf(p.acts[0].dims, p.acts[0].strides) & layoutsOf(p.acts[1].dims, p.acts[1].strides);
  Layout layout = (common & kNHWC) || !common ? kNHWC : kNCHW;
  bool reference = false;
  ConvEntry e = buildConv(p, layout, reference);
  if (reference && layout != kNHWC) e = buildConv(p, kNHWC, reference);
  return e;
}

// ptrs: one per slot, in the order buildConv adds them.
void runConv(const ConvProblem& p, const std::vector<void*>& ptrs) {
  dnn::Key key(p.prop);
  const auto& s = p.s;
  key.add(int64_t(p.d)).add(s.N).add(s.C).add(s.H).add(s.W).add(s.O).add(s.kh).add(s.kw);
  key.add(s.sh).add(s.sw).add(s.ph).add(s.pw).add(s.dh).add(s.dw).add(s.G).add(p.bias);
  for (const Act& a : p.acts) {
    // Only the layout matters for the primitive; strides of size-1 dims are noise.
    for (int k = 0; k < 4; k++) key.add(a.dims[k] == 1 ? -1 : a.strides[k]);
  }

  std::lock_guard<std::mutex> lock(dnn::execMutex());
  auto e = convCache().get(key, [&] {
    try {
      return buildBest(p);
    } catch (const dnnl::error& err) {
      throw Error(cat(propName(p.prop), ": oneDNN refused ", dnn::dtypeName(p.d), " N ", s.N, " C ", s.C,
                      " H ", s.H, " W ", s.W, " O ", s.O, " kernel ", s.kh, "x", s.kw, " stride ", s.sh,
                      "x", s.sw, " pad ", s.ph, "x", s.pw, " dilation ", s.dh, "x", s.dw, " groups ", s.G, ": ",
                      err.what()));
    }
  });
  MT_CHECK(ptrs.size() == e->slots.size(), propName(p.prop), ": internal slot count mismatch");
  std::vector<size_t> sizes{e->scratchBytes};
  for (auto& slot : e->slots) sizes.push_back(slot.converts ? slot.primBytes : 0);
  auto pieces = dnn::arena().carve(sizes);
  e->scratch.set_data_handle(pieces[0]);
  for (size_t i = 0; i < e->slots.size(); i++) {
    Slot& slot = e->slots[i];
    slot.user.set_data_handle(ptrs[i]);
    if (slot.converts) slot.prim.set_data_handle(pieces[i + 1]);
  }
  auto& st = dnn::stream();
  for (auto& slot : e->slots)
    if (slot.converts && !slot.output) slot.convert.execute(st, slot.user, slot.prim);
  e->prim.execute(st, e->args);
  for (auto& slot : e->slots)
    if (slot.converts && slot.output) slot.convert.execute(st, slot.prim, slot.user);
  st.wait();
}

// ---- argument reading and the f64 path ----

Act readAct(const Napi::CallbackInfo& info, size_t stridesArg, Dims4 dims, Prop p, const char* what) {
  auto v = argInts(info, stridesArg);
  MT_CHECK(v.size() == 4, propName(p), ": ", what, " strides must have 4 values [N, C, H, W], got ", v.size());
  Act a{dims, {v[0], v[1], v[2], v[3]}};
  for (int k = 0; k < 4; k++)
    MT_CHECK(a.strides[k] >= 0, propName(p), ": negative ", what, " strides are not supported");
  return a;
}

void* actPtr(Prop p, const char* what, int64_t id, int64_t off, const Act& a, size_t item) {
  return dnn::operandPtr(propName(p), what, id, off, stridedSpan(a.dims.data(), a.strides.data(), 4), item, vec(a.dims), vec(a.strides));
}

void* plainPtr(Prop p, const char* what, int64_t id, int64_t off, std::vector<int64_t> dims, size_t item) {
  int64_t n = 1;
  std::vector<int64_t> strides(dims.size());
  for (size_t k = dims.size(); k-- > 0;) strides[k] = n, n *= dims[k];
  return dnn::operandPtr(propName(p), what, id, off, n, item, dims, strides);
}

void checkShape(Prop p, DType d, const ref::ConvShape& s) {
  MT_CHECK(d == DType::F32 || d == DType::BF16 || d == DType::F64, propName(p), ": dtype ",
           dnn::dtypeName(d), " is not supported (f32, bf16, f64)");
  MT_CHECK(s.N > 0 && s.C > 0 && s.H > 0 && s.W > 0 && s.O > 0 && s.kh > 0 && s.kw > 0, propName(p),
           ": sizes must be positive (N ", s.N, " C ", s.C, " H ", s.H, " W ", s.W, " O ", s.O,
           " kernel ", s.kh, "x", s.kw, ")");
  MT_CHECK(s.sh > 0 && s.sw > 0 && s.ph >= 0 && s.pw >= 0, propName(p), ": stride ", s.sh, "x", s.sw,
           " must be positive and padding ", s.ph, "x", s.pw, " non-negative");
  MT_CHECK(s.dh > 0 && s.dw > 0 && s.G > 0 && s.C % s.G == 0 && s.O % s.G == 0, propName(p), ": dilation ", s.dh,
           "x", s.dw, " must be positive and groups ", s.G, " must divide C ", s.C, " and O ", s.O);
  const int64_t ekh = s.dh * (s.kh - 1) + 1, ekw = s.dw * (s.kw - 1) + 1;
  MT_CHECK(s.H + 2 * s.ph >= ekh && s.W + 2 * s.pw >= ekw, propName(p), ": kernel ", s.kh, "x", s.kw,
           " (dilated ", ekh, "x", ekw, ") is larger than the padded input ", s.H + 2 * s.ph, "x", s.W + 2 * s.pw);
}

// The optional trailing (dilationH, dilationW, groups) after the last fixed argument; 1 when absent.
void readDilationGroups(const Napi::CallbackInfo& info, size_t at, ref::ConvShape& s) {
  if (info.Length() <= at || info[at].IsUndefined()) return;
  s.dh = argInt(info, at), s.dw = argInt(info, at + 1), s.G = argInt(info, at + 2);
}

ref::ConvShape readShape(const Napi::CallbackInfo& info, size_t nchw, size_t okk, size_t stridePad) {
  ref::ConvShape s;
  s.N = argInt(info, nchw), s.C = argInt(info, nchw + 1), s.H = argInt(info, nchw + 2), s.W = argInt(info, nchw + 3);
  s.O = argInt(info, okk), s.kh = argInt(info, okk + 1), s.kw = argInt(info, okk + 2);
  s.sh = argInt(info, stridePad), s.sw = argInt(info, stridePad + 1);
  s.ph = argInt(info, stridePad + 2), s.pw = argInt(info, stridePad + 3);
  return s;
}

// conv2dForward(dtype, xId, xOff, xStrides, N, C, H, W, wId, wOff, O, kh, kw, biasId, biasOff,
//               outId, outOff, outStrides, strideH, strideW, padH, padW[, dilationH, dilationW, groups])
// Weights are [O, C / groups, kh, kw]; dilation and groups default to 1.
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  const Prop P = kForward;
  DType d = toDType(int(argInt(info, 0)));
  ref::ConvShape s = readShape(info, 4, 10, 18);
  readDilationGroups(info, 22, s);
  checkShape(P, d, s);
  const size_t item = itemsize(d), biasItem = d == DType::F64 ? 8 : 4;
  Act x = readAct(info, 3, {s.N, s.C, s.H, s.W}, P, "input");
  Act y = readAct(info, 17, {s.N, s.O, s.OH(), s.OW()}, P, "output");
  void* xp = actPtr(P, "input", argInt(info, 1), argInt(info, 2), x, item);
  void* wp = plainPtr(P, "weights", argInt(info, 8), argInt(info, 9), {s.O, s.C / s.G, s.kh, s.kw}, item);
  int64_t biasId = argInt(info, 13);
  void* bp = biasId ? plainPtr(P, "bias", biasId, argInt(info, 14), {s.O}, biasItem) : nullptr;
  void* yp = actPtr(P, "output", argInt(info, 15), argInt(info, 16), y, item);
  if (d == DType::F64) {
    ref::convForward(s, static_cast<double*>(xp), x.strides.data(), static_cast<double*>(wp),
                     static_cast<double*>(bp), static_cast<double*>(yp), y.strides.data());
  } else {
    std::vector<void*> ptrs{xp, wp};
    if (bp) ptrs.push_back(bp);
    ptrs.push_back(yp);
    runConv(ConvProblem{P, s, d, {x, y}, bp != nullptr}, ptrs);
  }
  return info.Env().Undefined();
}

// conv2dBackwardData(dtype, gradOutId, gradOutOff, gradOutStrides, wId, wOff, gradInId, gradInOff,
//                    gradInStrides, N, C, H, W, O, kh, kw, strideH, strideW, padH, padW
//                    [, dilationH, dilationW, groups])
// Writes gradIn (does not accumulate).
Napi::Value Conv2dBackwardData(const Napi::CallbackInfo& info) {
  const Prop P = kBackwardData;
  DType d = toDType(int(argInt(info, 0)));
  ref::ConvShape s = readShape(info, 9, 13, 16);
  readDilationGroups(info, 20, s);
  checkShape(P, d, s);
  const size_t item = itemsize(d);
  Act gy = readAct(info, 3, {s.N, s.O, s.OH(), s.OW()}, P, "gradOut");
  Act gx = readAct(info, 8, {s.N, s.C, s.H, s.W}, P, "gradIn");
  void* gyp = actPtr(P, "gradOut", argInt(info, 1), argInt(info, 2), gy, item);
  void* wp = plainPtr(P, "weights", argInt(info, 4), argInt(info, 5), {s.O, s.C / s.G, s.kh, s.kw}, item);
  void* gxp = actPtr(P, "gradIn", argInt(info, 6), argInt(info, 7), gx, item);
  if (d == DType::F64) {
    ref::convBackwardData(s, static_cast<double*>(gyp), gy.strides.data(), static_cast<double*>(wp),
                          static_cast<double*>(gxp), gx.strides.data());
  } else {
    runConv(ConvProblem{P, s, d, {gy, gx}, false}, {gyp, wp, gxp});
  }
  return info.Env().Undefined();
}

// conv2dBackwardWeights(dtype, xId, xOff, xStrides, gradOutId, gradOutOff, gradOutStrides,
//                       gradWId, gradWOff, gradBiasId, gradBiasOff, N, C, H, W, O, kh, kw,
//                       strideH, strideW, padH, padW[, dilationH, dilationW, groups])
// Writes gradW ([O, C / groups, kh, kw], dtype) and gradBias ([O]; f32 for f32/bf16, f64 for f64).
Napi::Value Conv2dBackwardWeights(const Napi::CallbackInfo& info) {
  const Prop P = kBackwardWeights;
  DType d = toDType(int(argInt(info, 0)));
  ref::ConvShape s = readShape(info, 11, 15, 18);
  readDilationGroups(info, 22, s);
  checkShape(P, d, s);
  const size_t item = itemsize(d), biasItem = d == DType::F64 ? 8 : 4;
  Act x = readAct(info, 3, {s.N, s.C, s.H, s.W}, P, "input");
  Act gy = readAct(info, 6, {s.N, s.O, s.OH(), s.OW()}, P, "gradOut");
  void* xp = actPtr(P, "input", argInt(info, 1), argInt(info, 2), x, item);
  void* gyp = actPtr(P, "gradOut", argInt(info, 4), argInt(info, 5), gy, item);
  void* gwp = plainPtr(P, "gradWeights", argInt(info, 7), argInt(info, 8), {s.O, s.C / s.G, s.kh, s.kw}, item);
  int64_t gbId = argInt(info, 9);
  void* gbp = gbId ? plainPtr(P, "gradBias", gbId, argInt(info, 10), {s.O}, biasItem) : nullptr;
  if (d == DType::F64) {
    ref::convBackwardWeights(s, static_cast<double*>(xp), x.strides.data(), static_cast<double*>(gyp),
                             gy.strides.data(), static_cast<double*>(gwp), static_cast<double*>(gbp));
  } else {
    std::vector<void*> ptrs{xp, gyp, gwp};
    if (gbp) ptrs.push_back(gbp);
    runConv(ConvProblem{P, s, d, {x, gy}, gbp != nullptr}, ptrs);
  }
  return info.Env().Undefined();
}

// benchOnednnConv(dtypeCode, N, C, H, W, O, k, stride, pad, iters) → {fwd, bwdData, bwdWeights}:
// median seconds of each oneDNN primitive executed directly on preallocated buffers, NHWC
// activations, "any" weights already in the primitive's layout, no bias (the peer for the bench).
Napi::Value BenchOnednnConv(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  MT_CHECK(d == DType::F32 || d == DType::BF16, "benchOnednnConv: dtype ", dnn::dtypeName(d),
           " is not supported (f32, bf16)");
  ref::ConvShape s{argInt(info, 1), argInt(info, 2), argInt(info, 3), argInt(info, 4), argInt(info, 5),
                   argInt(info, 6), argInt(info, 6), argInt(info, 7), argInt(info, 7), argInt(info, 8),
                   argInt(info, 8)};
  int64_t iters = argInt(info, 9);
  checkShape(kForward, d, s);
  MT_CHECK(iters > 0, "benchOnednnConv: iters must be positive");
  auto& eng = dnn::engine();
  const dnn::dt t = dnn::toDnnl(d);
  const memory::dims strides{s.sh, s.sw}, pad{s.ph, s.pw}, wDims{s.O, s.C, s.kh, s.kw};
  memory::desc x({s.N, s.C, s.H, s.W}, t, memory::format_tag::nhwc);
  memory::desc y({s.N, s.O, s.OH(), s.OW()}, t, memory::format_tag::nhwc);
  memory::desc wAny(wDims, t, memory::format_tag::any), dwAny(wDims, dnn::dt::f32, memory::format_tag::any);
  using namespace dnnl;
  convolution_forward::primitive_desc fpd(
      convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, x, wAny, y,
                                strides, pad, pad), eng);
  convolution_backward_data::primitive_desc dpd(
      convolution_backward_data::desc(algorithm::convolution_direct, x, wAny, y, strides, pad, pad), eng, fpd);
  convolution_backward_weights::primitive_desc wpd(
      convolution_backward_weights::desc(algorithm::convolution_direct, x, dwAny, y, strides, pad, pad), eng, fpd);
  memory xm(x, eng), ym(y, eng), gxm(x, eng), gym(y, eng), wf(fpd.weights_desc(), eng),
      wd(dpd.weights_desc(), eng), gw(wpd.diff_weights_desc(), eng);
  for (auto* m : {&xm, &gym, &wf, &wd}) {
    auto* p = static_cast<uint8_t*>(m->get_data_handle());
    size_t n = m->get_desc().get_size();
    for (size_t i = 0; i < n; i++) p[i] = uint8_t(0x3c + (i * 7) % 3);
  }
  convolution_forward fwd(fpd);
  convolution_backward_data bwdData(dpd);
  convolution_backward_weights bwdWeights(wpd);
  auto& st = dnn::stream();
  std::lock_guard<std::mutex> lock(dnn::execMutex());
  auto time = [&](primitive& prim, std::unordered_map<int, memory> args) {
    return dnn::medianSeconds(iters, [&] {
      prim.execute(st, args);
      st.wait();
    });
  };
  auto out = Napi::Object::New(info.Env());
  out.Set("fwd", time(fwd, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wf}, {DNNL_ARG_DST, ym}}));
  out.Set("bwdData", time(bwdData, {{DNNL_ARG_DIFF_DST, gym}, {DNNL_ARG_WEIGHTS, wd}, {DNNL_ARG_DIFF_SRC, gxm}}));
  out.Set("bwdWeights", time(bwdWeights, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, gym}, {DNNL_ARG_DIFF_WEIGHTS, gw}}));
  return out;
}

}  // namespace

void registerConv(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "conv2dForward", Conv2dForward);
  MT_EXPORT(exports, "conv2dBackwardData", Conv2dBackwardData);
  MT_EXPORT(exports, "conv2dBackwardWeights", Conv2dBackwardWeights);
  MT_EXPORT(exports, "benchOnednnConv", BenchOnednnConv);
  // The conv2d bindings take (dilationH, dilationW, groups); an older addon would ignore them.
  exports.Set("conv2dGroups", Napi::Boolean::New(env, true));
}

}  // namespace mt
