// Scaled-dot-product attention on cuDNN's fused flash-attention engines, through the graph API:
// the operation graphs cudnn-frontend's composite SDPA nodes emit for cuDNN 9.x before 9.21 (our
// own code, following that layout op for op, since cuDNN's fused engines match the graph's
// pattern). Forward: S = Q·Kᵀ, S·scale, causal mask (row/col GEN_INDEX, CMP_GE, BINARY_SELECT with
// -inf), softmax as max/sub/exp/sum/div with Stats = max + log(sum) written out, O = P·V (P in the
// input dtype). Backward: softmax_sum = rowsum(dO·O) (written to the caller's scratch),
// P = exp(S·scale - Stats) masked, dV = Pᵀ·dO, dS = (dO·Vᵀ - softmax_sum)·P·scale, dK = dSᵀ·Q,
// dQ = dS·K straight into dQ, cudnn-frontend's deterministic form on Hopper (the default: the same
// bits every run, as our other kernels give), or with MESHTRAIN_CUDNN_ATTENTION_DETERMINISTIC=0
// through an f32 accumulator in the workspace (not bit-reproducible; the H200's GPT-2 124M step
// 16.4 -> 15.9 ms). One plan per problem (device, pass,
// dtype, shape, strides, causal, scale), built on first use and cached for the process (building
// takes milliseconds to seconds); refusals are cached too. cuDNN's execute only launches kernels on
// the handle's stream, so it runs inside a CUDA graph capture; a plan is never built inside one
// (the build may allocate or synchronize): that call is refused and the caller's kernels run.
// CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include "cuda/attention_cudnn.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <vector>
#include "cuda/call_scratch.h"
#include "cuda/census.h"
#include "cuda/cudnn_graph_builder.h"
#include "cuda/device_memory.h"
#include "cuda/kernels.h"
#include "cuda/matmul.h"  // dtypeNameOf
#include "cuda/runtime.h"
#include "tensor/dtype.h"

namespace mt {
namespace {

using namespace dnn9g;

// Variant-pack uids, in the order the graphs create their non-virtual tensors (GTensor uids).
enum FwdUid : int64_t { fQ = 1, fK, fV, fO, fStats, fScale, fNegInf };
enum BwdUid : int64_t { bQ = 1, bK, bV, bO, bStats, bdO, bdQ, bdK, bdV, bScale, bNegInf, bOne, bSum, bdQAcc };

struct Plan {
  bool ok = false;
  std::string why;  // the refusal, when not ok
  void* plan = nullptr;
  int64_t workspace = 0;
};

struct State {
  std::mutex mu;
  std::map<std::vector<int64_t>, Plan> plans;
  CudnnAttentionStats stats;
};

State& state() {
  static State* s = new State();
  return *s;
}

Dims4 rowMajor(const CudaAttnStrides& s) { return {s.b, s.h, s.t, 1}; }
// The same view as [batch, heads, dim, t]: K as Kᵀ, V as Vᵀ.
Dims4 transposed(const CudaAttnStrides& s) { return {s.b, s.h, 1, s.t}; }

// The causal mask of cudnn-frontend's diagonal band (right bound 0, top-left): keeps s where
// row >= col, else -inf; indices generated on s's shape.
GTensor causalMask(CudnnGraphBuilder& gb, const GTensor& s, const GTensor& negInf) {
  const GTensor row = gb.virt(kInt32, s.dims), col = gb.virt(kInt32, s.dims), keep = gb.virt(kBoolean, s.dims);
  gb.pointwise(kGenIndex, s, nullptr, nullptr, row, kFloat, 2);
  gb.pointwise(kGenIndex, s, nullptr, nullptr, col, kFloat, 3);
  gb.pointwise(kCmpGe, row, &col, nullptr, keep, kBoolean);
  const GTensor out = gb.virt(kFloat, s.dims);
  gb.pointwise(kBinarySelect, s, &negInf, &keep, out);
  return out;
}

void buildForward(CudnnGraphBuilder& gb, int io, const CudaAttnShape& g, const CudaAttnStrides* st) {
  const int64_t b = g.batch, h = g.heads, sq = g.tq, skv = g.tk, d = g.dim;
  const GTensor q = gb.tensor(io, {b, h, sq, d}, rowMajor(st[0]), false);
  const GTensor kt = gb.tensor(io, {b, h, d, skv}, transposed(st[1]), false);
  const GTensor v = gb.tensor(io, {b, h, skv, d}, rowMajor(st[2]), false);
  const GTensor o = gb.tensor(io, {b, h, sq, d}, rowMajor(st[3]), false);
  const GTensor stats = gb.tensor(kFloat, {b, h, sq, 1}, {h * sq, sq, 1, 1}, false);
  const GTensor scale = gb.scalar(), negInf = gb.scalar();
  const Dims4 sd{b, h, sq, skv}, rd{b, h, sq, 1};
  const GTensor s = gb.virt(kFloat, sd), scaled = gb.virt(kFloat, sd);
  gb.matmul(q, kt, s);
  gb.pointwise(kMul, s, &scale, nullptr, scaled);
  const GTensor masked = g.causal ? causalMask(gb, scaled, negInf) : scaled;
  const GTensor mx = gb.virt(kFloat, rd), centred = gb.virt(kFloat, sd), e = gb.virt(kFloat, sd);
  const GTensor sum = gb.virt(kFloat, rd), logSum = gb.virt(kFloat, rd), p = gb.virt(io, sd);
  gb.reduction(kReduceMax, masked, mx);
  gb.pointwise(kSub, masked, &mx, nullptr, centred);
  gb.pointwise(kExp, centred, nullptr, nullptr, e);
  gb.reduction(kReduceAdd, e, sum);
  gb.pointwise(kLog, sum, nullptr, nullptr, logSum);
  gb.pointwise(kAdd, mx, &logSum, nullptr, stats);
  gb.pointwise(kDiv, e, &sum, nullptr, p);
  gb.matmul(p, v, o);
}

// deterministic: dQ = dS·K straight into dQ (cudnn-frontend's "dP workspace" form, which it uses on
// Hopper when asked for a deterministic algorithm) instead of through the f32 accumulator, whose
// sums cuDNN may order differently from run to run.
void buildBackward(CudnnGraphBuilder& gb, int io, const CudaAttnShape& g, const CudaAttnStrides* st, bool deterministic) {
  const int64_t b = g.batch, h = g.heads, sq = g.tq, skv = g.tk, d = g.dim;
  const GTensor q = gb.tensor(io, {b, h, sq, d}, rowMajor(st[0]), false);
  const GTensor kt = gb.tensor(io, {b, h, d, skv}, transposed(st[1]), false);
  const GTensor vt = gb.tensor(io, {b, h, d, skv}, transposed(st[2]), false);
  const GTensor o = gb.tensor(io, {b, h, sq, d}, rowMajor(st[3]), false);
  const GTensor stats = gb.tensor(kFloat, {b, h, sq, 1}, {h * sq, sq, 1, 1}, false);
  const GTensor dO = gb.tensor(io, {b, h, sq, d}, rowMajor(st[4]), false);
  const GTensor dQ = gb.tensor(io, {b, h, sq, d}, rowMajor(st[5]), false);
  const GTensor dK = gb.tensor(io, {b, h, skv, d}, rowMajor(st[6]), false);
  const GTensor dV = gb.tensor(io, {b, h, skv, d}, rowMajor(st[7]), false);
  const GTensor scale = gb.scalar(), negInf = gb.scalar(), one = gb.scalar();
  const GTensor softmaxSum = gb.tensor(kFloat, {b, h, sq, 1}, {h * sq, sq, 1, 1}, false);
  const GTensor dQAcc = deterministic ? GTensor{} : gb.tensor(kFloat, {b, h, sq, d}, {h * sq * d, sq * d, d, 1}, false);
  const Dims4 sd{b, h, sq, skv}, rd{b, h, sq, 1}, td{b, h, skv, sq}, tStrides{h * sq * skv, sq * skv, 1, skv};
  // softmax_sum = rowsum(dO * O) * 1 (the frontend's product keeps its odd, immaterial strides)
  const GTensor prod = gb.tensor(kFloat, {b, h, sq, d}, {h * sq * d, sq * d, h * d, 1}, true);
  const GTensor rowSum = gb.virt(kFloat, rd);
  gb.pointwise(kMul, dO, &o, nullptr, prod);
  gb.reduction(kReduceAdd, prod, rowSum);
  gb.pointwise(kMul, rowSum, &one, nullptr, softmaxSum);
  // P = exp(Q Kᵀ scale - Stats), masked
  const GTensor s = gb.virt(kFloat, sd), scaled = gb.virt(kFloat, sd), shifted = gb.virt(kFloat, sd);
  gb.matmul(q, kt, s);
  gb.pointwise(kMul, s, &scale, nullptr, scaled);
  gb.pointwise(kSub, scaled, &stats, nullptr, shifted);
  const GTensor masked = g.causal ? causalMask(gb, shifted, negInf) : shifted;
  const GTensor p = gb.virt(kFloat, sd);
  gb.pointwise(kExp, masked, nullptr, nullptr, p);
  // dV = Pᵀ dO
  const GTensor pt = gb.tensor(io, td, tStrides, true);
  gb.reshape(p, pt);
  gb.matmul(pt, dO, dV);
  // dS = (dO Vᵀ - softmax_sum) * P * scale
  const GTensor dp = gb.virt(kFloat, sd), dpc = gb.virt(kFloat, sd), dpp = gb.virt(kFloat, sd), ds = gb.virt(kFloat, sd);
  gb.matmul(dO, vt, dp);
  gb.pointwise(kSub, dp, &softmaxSum, nullptr, dpc);
  gb.pointwise(kMul, dpc, &p, nullptr, dpp);
  gb.pointwise(kMul, dpp, &scale, nullptr, ds);
  // dK = dSᵀ Q
  const GTensor dst = gb.tensor(io, td, tStrides, true);
  gb.reshape(ds, dst);
  gb.matmul(dst, q, dK);
  // dQ = dS K, accumulated in f32
  const GTensor k = gb.tensor(io, {b, h, skv, d}, rowMajor(st[1]), true);
  gb.reshape(kt, k);
  if (deterministic) {
    gb.matmul(ds, k, dQ);
  } else {
    gb.matmul(ds, k, dQAcc);
    gb.pointwise(kIdentity, dQAcc, nullptr, nullptr, dQ);
  }
}

dnn9::Handle handleOf(const CudnnApi& api, int dev) {
  static std::array<dnn9::Handle, kMaxCudaDevices> handles{};
  dnn9::Handle& h = handles[size_t(dev)];
  if (!h) {
    cudaUseDevice(dev);
    dnn9::Handle made = nullptr;
    if (api.create(&made) != dnn9::kSuccess) throw CudnnGraphError("cudnnCreate failed");
    // The compute stream never changes, so one binding serves every call.
    if (api.setStream(made, computeStream(dev)) != dnn9::kSuccess) throw CudnnGraphError("cudnnSetStream failed");
    h = made;
  }
  return h;
}

// Strides of size-1 dims mean nothing to us but cuDNN wants them positive: dense values there
// (keeps equal problems under one plan key too). `t` is the view's length.
CudaAttnStrides settled(CudaAttnStrides s, const CudaAttnShape& g, int64_t t) {
  if (t == 1) s.t = g.dim;
  if (g.heads == 1) s.h = t * s.t;
  if (g.batch == 1) s.b = g.heads * s.h;
  return s;
}

bool refuse(State& s, const std::string& why) {
  s.stats.refusals++;
  s.stats.lastRefusal = why;
  return false;
}

// What cuDNN's fused engines take, before any plan: the reason they would not, or "".
std::string unsupported(const CudaAttnShape& g, const CudaAttnStrides* st, int n) {
  if (g.dim != 64 && g.dim != 128) return "head dim " + std::to_string(g.dim) + " (cuDNN path: 64 or 128)";
  if (g.batch < 1 || g.tq < 1 || g.tk < 1) return "an empty problem";
  for (int i = 0; i < n; i++)  // 16-byte aligned rows (the tensors declare 16-byte alignment)
    if (st[i].b % 8 || st[i].h % 8 || st[i].t % 8) return "a stride that is not a multiple of 8 elements";
  return "";
}

// The plan for (pass, problem), built at first use unless the stream captures; nullptr and the
// reason when cuDNN cannot run it.
const Plan* planFor(State& s, int pass, int dev, int dtype, const CudaAttnShape& g, const CudaAttnStrides* st, int n,
                    std::string* why) {
  std::vector<int64_t> key{pass, dev, dtype, g.batch, g.heads, g.tq, g.tk, g.dim, g.causal ? 1 : 0};
  int64_t scaleBits;
  std::memcpy(&scaleBits, &g.scale, 8);
  key.push_back(scaleBits);
  for (int i = 0; i < n; i++) key.insert(key.end(), {st[i].b, st[i].h, st[i].t});
  auto it = s.plans.find(key);
  if (it != s.plans.end()) {
    if (!it->second.ok) *why = it->second.why;
    return it->second.ok ? &it->second : nullptr;
  }
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  cudaCheck(cudaStreamIsCapturing(computeStream(dev), &cs), "cudaStreamIsCapturing");
  if (cs != cudaStreamCaptureStatusNone) {
    *why = "no cuDNN plan was built for this problem before the graph capture";
    return nullptr;
  }
  Plan p;
  std::string libWhy;
  const CudnnApi* api = cudnn(&libWhy);
  p.why = unsupported(g, st, n);
  if (!api) p.why = libWhy;
  if (p.why.empty()) {
    try {
      CudnnGraphBuilder gb(*api);
      const int io = dtype == int(DType::BF16) ? kBfloat16 : kHalf;
      pass == 0 ? buildForward(gb, io, g, st) : buildBackward(gb, io, g, st, pass == 2);
      const CudnnPlan built = gb.build(handleOf(*api, dev));
      p.ok = true;
      p.plan = built.plan;
      p.workspace = built.workspace;
      s.stats.plansBuilt++;
    } catch (const CudnnGraphError& e) {
      p.why = e.what();
    }
  }
  if (!p.ok) {
    p.why = std::string(pass == 0 ? "forward" : pass == 1 ? "backward" : "deterministic backward") + ": " + p.why;
    // Said only where cuDNN was asked for by name: by default the fa2 kernels take what it leaves.
    if (const char* e = std::getenv("MESHTRAIN_ATTENTION"); e && std::strcmp(e, "cudnn") == 0)
      std::fprintf(stderr, "meshtrain: MESHTRAIN_ATTENTION=cudnn: cuDNN does not run attention %s %lldx%lldx%lldx%lld (Tk %lld)%s: %s; using the fa2/WMMA kernels\n",
                   dtypeNameOf(DType(dtype)), (long long)g.batch, (long long)g.heads, (long long)g.tq, (long long)g.dim,
                   (long long)g.tk, g.causal ? " causal" : "", p.why.c_str());
    *why = p.why;
  }
  Plan& slot = s.plans[key] = p;
  return slot.ok ? &slot : nullptr;
}

// Runs a built plan: uids[i] bound to ptrs[i] (the first `device` of them device memory, the rest
// by-value host scalars), the workspace and the `extraUid` tensor of `extraBytes` from the
// caching allocator.
bool execute(State& s, int dev, const Plan& p, const char* name, std::vector<int64_t> uids, std::vector<void*> ptrs,
             size_t device, int64_t extraBytes, int64_t extraUid, double bytes) {
  for (size_t i = 0; i < device; i++)
    if (reinterpret_cast<uintptr_t>(ptrs[i]) % 16) return refuse(s, std::string(name) + ": an operand is not 16-byte aligned");
  const CudnnApi& api = *cudnn(nullptr);
  CallScratch scratch(dev);
  void* ws = p.workspace > 0 ? scratch(p.workspace) : nullptr;
  if (extraUid) {
    uids.push_back(extraUid);
    ptrs.push_back(scratch(extraBytes));
  }
  void* vp = nullptr;
  auto check = [&](int st, const char* call) {
    MT_CHECK(st == dnn9::kSuccess, name, ": ", call, " failed: ", api.getErrorString(st), " (cuDNN status ", st, ")");
  };
  check(api.backendCreate(kVariantPackDesc, &vp), "cudnnBackendCreateDescriptor(variant pack)");
  struct Destroy {
    const CudnnApi& api;
    void* d;
    ~Destroy() { api.backendDestroy(d); }
  } destroy{api, vp};
  check(api.backendSetAttribute(vp, kVariantPackUids, kTypeInt64, int64_t(uids.size()), uids.data()), "set variant pack uids");
  check(api.backendSetAttribute(vp, kVariantPackPointers, kTypeVoidPtr, int64_t(ptrs.size()), ptrs.data()), "set variant pack pointers");
  check(api.backendSetAttribute(vp, kVariantPackWorkspace, kTypeVoidPtr, 1, &ws), "set variant pack workspace");
  check(api.backendFinalize(vp), "cudnnBackendFinalize(variant pack)");
  MT_CENSUS_CALL("library", name, bytes);
  cudaUseDevice(dev);
  check(api.backendExecute(handleOf(api, dev), p.plan, vp), "cudnnBackendExecute");
  MT_CENSUS_DONE(computeStream(dev));
  s.stats.calls++;
  return true;
}

// cuDNN's fused engines are for 16-bit inputs; f32/f64 are not refusals (no family sends them to tensor cores).
bool sixteenBit(int dtype) { return dtype == int(DType::BF16) || dtype == int(DType::F16); }

}  // namespace

bool cudnnAttentionForward(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                           const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs, void* o,
                           const CudaAttnStrides& os, void* lse) {
  if (!sixteenBit(dtype)) return false;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  const CudaAttnStrides st[4] = {settled(qs, g, g.tq), settled(ks, g, g.tk), settled(vs, g, g.tk), settled(os, g, g.tq)};
  std::string why;
  const Plan* p = planFor(s, 0, dev, dtype, g, st, 4, &why);
  if (!p) return refuse(s, why);
  float scale = float(g.scale), negInf = -std::numeric_limits<float>::infinity();
  const double bytes = 2.0 * double(g.batch * g.heads) * double(2 * g.tq + 2 * g.tk) * double(g.dim);
  std::vector<int64_t> uids{fQ, fK, fV, fO, fStats, fScale};
  std::vector<void*> ptrs{const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), o, lse, &scale};
  if (g.causal) uids.push_back(fNegInf), ptrs.push_back(&negInf);  // the mask's only operand
  return execute(s, dev, *p, "cudnn attention forward", uids, ptrs, 5, 0, 0, bytes);
}

bool cudnnAttentionBackward(int dev, int dtype, const CudaAttnShape& g, const void* q, const CudaAttnStrides& qs,
                            const void* k, const CudaAttnStrides& ks, const void* v, const CudaAttnStrides& vs,
                            const void* o, const CudaAttnStrides& os, const void* dO, const CudaAttnStrides& gs,
                            const void* lse, void* dq, const CudaAttnStrides& dqs, void* dk, const CudaAttnStrides& dks,
                            void* dv, const CudaAttnStrides& dvs, void* softmaxSum) {
  if (!sixteenBit(dtype)) return false;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  const CudaAttnStrides st[8] = {settled(qs, g, g.tq),  settled(ks, g, g.tk),  settled(vs, g, g.tk),
                                 settled(os, g, g.tq),  settled(gs, g, g.tq),  settled(dqs, g, g.tq),
                                 settled(dks, g, g.tk), settled(dvs, g, g.tk)};
  std::string why;
  const char* det = std::getenv("MESHTRAIN_CUDNN_ATTENTION_DETERMINISTIC");
  const bool deterministic = !det || std::strcmp(det, "0") != 0;
  const Plan* p = planFor(s, deterministic ? 2 : 1, dev, dtype, g, st, 8, &why);
  if (!p) return refuse(s, why);
  float scale = float(g.scale), negInf = -std::numeric_limits<float>::infinity(), one = 1.0f;
  const double bytes = 2.0 * double(g.batch * g.heads) * double(4 * g.tq + 4 * g.tk) * double(g.dim);
  auto cv = [](const void* x) { return const_cast<void*>(x); };
  // The f32 dQ accumulator (not in the deterministic form) lives in the workspace, as cudnn-frontend
  // places it (cuDNN >= 9.6 zeroes it).
  std::vector<int64_t> uids{bQ, bK, bV, bO, bStats, bdO, bdQ, bdK, bdV, bSum, bScale, bOne};
  std::vector<void*> ptrs{cv(q), cv(k), cv(v), cv(o), cv(lse), cv(dO), dq, dk, dv, softmaxSum, &scale, &one};
  if (g.causal) uids.push_back(bNegInf), ptrs.push_back(&negInf);
  return execute(s, dev, *p, "cudnn attention backward", uids, ptrs, 10, g.batch * g.heads * g.tq * g.dim * 4,
                 deterministic ? 0 : bdQAcc, bytes);
}

CudnnAttentionStats cudnnAttentionStats() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.stats;
}

}  // namespace mt
#endif
