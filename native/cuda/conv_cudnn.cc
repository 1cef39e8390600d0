// Conv2d through cuDNN's legacy convolution API (libcudnn.so.9, loaded at run time). Each problem
// (device, pass, dtype, shape, layouts) gets a plan made once and cached for the process:
// descriptors that describe our memory exactly — activations by their own NCHW or channels-last
// strides, weights as contiguous [O, C / groups, kh, kw] (cuDNN's NCHW filter format) — and an
// algorithm. When both activations are channels-last the filter goes to cuDNN as NHWC (a copy
// [O, kh, kw, C] in a scratch buffer, and back for the weight gradient; none for 1x1 filters,
// whose two layouts are the same bytes, nor for a filter the caller already laid out so: the
// TypeScript conv2d makes that copy once and keeps it for backward-data): cuDNN's fast NHWC
// kernels take all three tensors in one layout. Math: f32 runs with CUDNN_FMA_MATH (no TF32, so results match the CPU within f32
// rounding); bf16/f16 may use tensor cores, always accumulating in f32. Among the algorithms
// cuDNN's heuristics offer, deterministic ones come first. MESHTRAIN_CUDNN_BENCHMARK=1 times the
// candidates on the plan's first call instead (conv_cudnn_search.h). CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <array>
#include <cstdio>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>
#include "cuda/census.h"
#include "cuda/conv.h"
#include "cuda/conv_cudnn_search.h"
#include "cuda/cudnn_api.h"
#include "cuda/device_memory.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "tensor/dtype.h"
#include "tensor/storage.h"

namespace mt {
namespace {

constexpr int kMaxAlgos = 16;
// The most workspace a timed search may offer: the heuristics' largest accepted need, up to this.
constexpr size_t kSearchWorkspaceCap = size_t(1) << 30;

const char* passName(CudaConvProp p) {
  return p == kConvForward ? "conv2dForward" : p == kConvBackwardData ? "conv2dBackwardData" : "conv2dBackwardWeights";
}

const char* dtypeLabel(int d) {
  return d == int(DType::F32) ? "f32" : d == int(DType::BF16) ? "bf16" : d == int(DType::F16) ? "f16" : "f64";
}

// The descriptors and algorithm of one problem; `usable` false when cuDNN offered nothing we accept.
struct Plan {
  const CudnnApi* api = nullptr;
  dnn9::TensorDesc a = nullptr, b = nullptr;
  dnn9::FilterDesc w = nullptr;
  dnn9::ConvDesc conv = nullptr;
  int algo = -1, mathType = 0;
  size_t workspace = 0;
  size_t searchWorkspace = 0;  // the largest workspace of the accepted candidates, capped
  bool usable = false;
  ~Plan() {
    if (a) api->destroyTensorDesc(a);
    if (b) api->destroyTensorDesc(b);
    if (w) api->destroyFilterDesc(w);
    if (conv) api->destroyConvDesc(conv);
  }
};

std::mutex& planMutex() {
  static std::mutex m;
  return m;
}

// A problem: device, pass, dtype, the 14 sizes of CudaConvShape, the two layouts. A fixed array
// in a hash map, so a call's lookup allocates nothing and compares one key.
using PlanKey = std::array<int64_t, 19>;

struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the values
    for (int64_t v : k) h = (h ^ uint64_t(v)) * 1099511628211ull;
    return size_t(h);
  }
};

std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash>& plans() {
  static auto* p = new std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash>();
  return *p;
}

struct Checker {
  const CudnnApi& api;
  CudaConvProp prop;
  int dtype;
  const CudaConvShape& s;
  void operator()(int status, const char* call) const {
    MT_CHECK(status == dnn9::kSuccess, passName(prop), ": ", call, " failed: ", api.getErrorString(status),
             " (cuDNN status ", status, ") for ", dtypeLabel(dtype), " ", s.describe());
  }
};

dnn9::Handle handleOf(int dev, const Checker& check) {
  static std::array<dnn9::Handle, kMaxCudaDevices> handles{};
  dnn9::Handle& h = handles[size_t(dev)];
  if (!h) {
    cudaUseDevice(dev);
    check(check.api.create(&h), "cudnnCreate");
    // The compute stream never changes, so one binding serves every call.
    check(check.api.setStream(h, computeStream(dev)), "cudnnSetStream");
  }
  return h;
}

// Dense strides for dims in the layout that `strides` already follow (size-1 dims ignored):
// channels-last (1) or NCHW (0); -1 when neither, with `out` untouched.
int denseLayout(const int64_t* dims, const int64_t* strides, int* out) {
  const int64_t nhwc[4] = {dims[2] * dims[3] * dims[1], 1, dims[3] * dims[1], dims[1]};
  const int64_t nchw[4] = {dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1};
  for (int layout : {1, 0}) {
    const int64_t* want = layout ? nhwc : nchw;
    bool ok = true;
    for (int k = 0; k < 4; k++) ok = ok && (dims[k] == 1 || strides[k] == want[k]);
    if (!ok) continue;
    for (int k = 0; k < 4; k++) out[k] = int(want[k]);
    return layout;
  }
  return -1;
}

int dnnType(int d) {
  return d == int(DType::F32) ? dnn9::kFloat : d == int(DType::BF16) ? dnn9::kBfloat16 : dnn9::kHalf;
}

// The heuristics' candidates in our order: deterministic first, each group in cuDNN's order.
// f32 takes only FMA-math algorithms (DEFAULT_MATH permits TF32 on Ampere and later).
std::vector<const dnn9::AlgoPerf*> candidates(const dnn9::AlgoPerf* perf, int n, bool f32) {
  std::vector<const dnn9::AlgoPerf*> out;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++) {
      const dnn9::AlgoPerf& p = perf[i];
      if (p.status != dnn9::kSuccess || (f32 && p.mathType != dnn9::kFmaMath)) continue;
      if ((p.determinism == dnn9::kDeterministic) == (pass == 0)) out.push_back(&p);
    }
  return out;
}

std::unique_ptr<Plan> makePlan(int dev, CudaConvProp prop, int dtype, const CudaConvShape& s, const int* dimsA,
                               const int* stridesA, const int* dimsB, const int* stridesB, bool nhwcFilter,
                               const Checker& check) {
  const CudnnApi& api = check.api;
  auto p = std::make_unique<Plan>();
  p->api = &api;
  const int dt = dnnType(dtype);
  check(api.createTensorDesc(&p->a), "cudnnCreateTensorDescriptor");
  check(api.setTensorNd(p->a, dt, 4, dimsA, stridesA), "cudnnSetTensorNdDescriptor");
  check(api.createTensorDesc(&p->b), "cudnnCreateTensorDescriptor");
  check(api.setTensorNd(p->b, dt, 4, dimsB, stridesB), "cudnnSetTensorNdDescriptor");
  const int filter[4] = {int(s.O), int(s.C / s.groups), int(s.kh), int(s.kw)};
  check(api.createFilterDesc(&p->w), "cudnnCreateFilterDescriptor");
  check(api.setFilterNd(p->w, dt, nhwcFilter ? dnn9::kFormatNHWC : dnn9::kFormatNCHW, 4, filter),
        "cudnnSetFilterNdDescriptor");
  const int pad[2] = {int(s.ph), int(s.pw)}, stride[2] = {int(s.sh), int(s.sw)}, dil[2] = {int(s.dh), int(s.dw)};
  check(api.createConvDesc(&p->conv), "cudnnCreateConvolutionDescriptor");
  check(api.setConvNd(p->conv, 2, pad, stride, dil, dnn9::kCrossCorrelation, dnn9::kFloat),
        "cudnnSetConvolutionNdDescriptor");
  check(api.setConvGroupCount(p->conv, int(s.groups)), "cudnnSetConvolutionGroupCount");
  const bool f32 = dtype == int(DType::F32);
  check(api.setConvMathType(p->conv, f32 ? dnn9::kFmaMath : dnn9::kTensorOpMath), "cudnnSetConvolutionMathType");

  dnn9::Handle h = handleOf(dev, check);
  dnn9::AlgoPerf perf[kMaxAlgos] = {};
  int n = 0;
  if (prop == kConvForward)
    check(api.fwdAlgoV7(h, p->a, p->w, p->conv, p->b, kMaxAlgos, &n, perf), "cudnnGetConvolutionForwardAlgorithm_v7");
  else if (prop == kConvBackwardData)
    check(api.bwdDataAlgoV7(h, p->w, p->a, p->conv, p->b, kMaxAlgos, &n, perf),
          "cudnnGetConvolutionBackwardDataAlgorithm_v7");
  else
    check(api.bwdFilterAlgoV7(h, p->a, p->b, p->conv, p->w, kMaxAlgos, &n, perf),
          "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
  n = n < 0 ? 0 : n > kMaxAlgos ? kMaxAlgos : n;
  for (const dnn9::AlgoPerf* c : candidates(perf, n, f32)) {
    // The descriptor runs with the math type the heuristic assumed for this algorithm.
    if (api.setConvMathType(p->conv, c->mathType) != dnn9::kSuccess) continue;
    size_t bytes = 0;
    int st = prop == kConvForward ? api.fwdWorkspace(h, p->a, p->w, p->conv, p->b, c->algo, &bytes)
             : prop == kConvBackwardData ? api.bwdDataWorkspace(h, p->w, p->a, p->conv, p->b, c->algo, &bytes)
                                         : api.bwdFilterWorkspace(h, p->a, p->b, p->conv, p->w, c->algo, &bytes);
    if (st != dnn9::kSuccess) continue;
    if (bytes > p->searchWorkspace) p->searchWorkspace = bytes < kSearchWorkspaceCap ? bytes : kSearchWorkspaceCap;
    if (p->usable) continue;
    p->algo = c->algo;
    p->mathType = c->mathType;
    p->workspace = bytes;
    p->usable = true;
  }
  // The descriptor runs with the chosen algorithm's math type.
  if (p->usable) check(api.setConvMathType(p->conv, p->mathType), "cudnnSetConvolutionMathType");
  return p;
}

bool fitsInt(int64_t v) { return v >= 0 && v <= 0x7fffffff; }

// A fresh usable plan: keeps the heuristic's algorithm, or with MESHTRAIN_CUDNN_BENCHMARK=1 the
// fastest one a timed search accepts, timed on this call's inputs (the filter as cuDNN reads it).
// The census notes the choice ("cudnn plan <pass> <dtype>: algo N by search (heuristic M)").
void choose(int dev, CudaConvProp prop, int dtype, const CudaConvShape& s, Plan& p, dnn9::Handle h, const void* a,
            const void* f, const void* b, const CudaScratch& scratch) {
  const std::string what = std::string(passName(prop)) + " " + dtypeLabel(dtype);
  const int heuristic = p.algo;
  if (!cudnnBenchmarkOn()) {
    MT_CENSUS_CALL("note", "cudnn plan " + what + ": algo " + std::to_string(heuristic) + " by heuristic", 0);
    return;
  }
  // A search synchronizes, which would end a CUDA graph capture: a plan first made while capturing
  // keeps the heuristic's choice for good (cuda_graph.ts runs each shape eagerly before capturing).
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  cudaCheck(cudaStreamIsCapturing(computeStream(dev), &cs), "cudaStreamIsCapturing");
  if (cs != cudaStreamCaptureStatusNone) {
    MT_CENSUS_CALL("note", "cudnn plan " + what + ": algo " + std::to_string(heuristic) + " by heuristic (capturing)", 0);
    return;
  }
  const int64_t Cg = s.C / s.groups, item = dtype == int(DType::F32) ? 4 : 2;
  const int64_t outElems = prop == kConvForward         ? s.N * s.O * s.OH() * s.OW()
                           : prop == kConvBackwardData ? s.N * s.C * s.H * s.W
                                                       : s.O * Cg * s.kh * s.kw;
  // Each pass's inputs in Find's argument order: forward x, w; backward-data w, dy; backward-filter x, dy.
  const void* in0 = prop == kConvBackwardData ? f : a;
  const void* in1 = prop == kConvForward ? f : prop == kConvBackwardData ? a : b;
  ConvSearchProblem q{p.api, h, prop, p.a, p.b, p.w, p.conv, in0, in1, size_t(outElems * item), p.searchWorkspace};
  const bool f32 = dtype == int(DType::F32);
  Checker check{*p.api, prop, dtype, s};
  // Find times the algorithms the descriptor's math type permits: FMA only for f32, tensor cores allowed else.
  check(p.api->setConvMathType(p.conv, f32 ? dnn9::kFmaMath : dnn9::kTensorOpMath), "cudnnSetConvolutionMathType");
  ConvSearchResult r;
  try {
    r = searchConvAlgo(dev, q, f32, cudnnDeterministicOnly(), scratch, what.c_str());
  } catch (...) {
    p.api->setConvMathType(p.conv, p.mathType);  // the plan stays the heuristic's, usable after the error
    throw;
  }
  if (r.algo < 0) {
    // Nothing timed qualified: the heuristic's choice stands, with its math type back on the descriptor.
    check(p.api->setConvMathType(p.conv, p.mathType), "cudnnSetConvolutionMathType");
    MT_CENSUS_CALL("note", "cudnn plan " + what + ": algo " + std::to_string(heuristic) + " by heuristic (search: none of " +
                               std::to_string(r.timed) + " accepted)", 0);
    return;
  }
  p.algo = r.algo;
  p.mathType = r.mathType;
  p.workspace = r.workspace;
  MT_CENSUS_CALL("note", "cudnn plan " + what + ": algo " + std::to_string(r.algo) + " by search (heuristic " +
                             std::to_string(heuristic) + ")", 0);
}

}  // namespace

bool cudnnConv(int dev, CudaConvProp prop, int dtype, const CudaConvShape& s, const void* a, const int64_t* aStrides,
               void* w, void* b, const int64_t* bStrides, const CudaScratch& scratch, bool filterNhwc) {
  if (dtype != int(DType::F32) && dtype != int(DType::BF16) && dtype != int(DType::F16)) return false;
  std::string why;
  const CudnnApi* api = cudnn(&why);
  MT_CHECK(api, passName(prop), " on CUDA needs cuDNN for ", dtypeLabel(dtype), ": ", why);
  // Vectorized cuDNN kernels want 16-byte operands; a view at an odd offset takes the direct path.
  for (const void* q : {a, static_cast<const void*>(w), static_cast<const void*>(b)})
    if (reinterpret_cast<uintptr_t>(q) % 16) return false;
  const int64_t in[4] = {s.N, s.C, s.H, s.W}, out[4] = {s.N, s.O, s.OH(), s.OW()};
  const int64_t* dimsA = prop == kConvBackwardData ? out : in;
  const int64_t* dimsB = prop == kConvBackwardData ? in : out;
  int sa[4], sb[4], da[4], db[4];
  const int la = denseLayout(dimsA, aStrides, sa), lb = denseLayout(dimsB, bStrides, sb);
  if (la < 0 || lb < 0) return false;
  for (int k = 0; k < 4; k++) {
    MT_CHECK(fitsInt(dimsA[k]) && fitsInt(dimsB[k]) && fitsInt(int64_t(sa[k]) * dimsA[k]) &&
                 fitsInt(int64_t(sb[k]) * dimsB[k]),
             passName(prop), ": cuDNN takes 32-bit sizes; ", s.describe(), " is too large");
    da[k] = int(dimsA[k]), db[k] = int(dimsB[k]);
  }
  const bool nhwcFilter = la == 1 && lb == 1;
  Checker check{*api, prop, dtype, s};
  std::lock_guard<std::mutex> lock(planMutex());
  const PlanKey key{dev, prop, dtype, s.N, s.C, s.H, s.W, s.O, s.kh, s.kw, s.sh, s.sw,
                    s.ph, s.pw, s.dh, s.dw, s.groups, la, lb};
  auto& slot = plans()[key];
  const bool fresh = !slot;
  if (fresh) {
    slot = makePlan(dev, prop, dtype, s, da, sa, db, sb, nhwcFilter, check);
    // Once per problem: the direct kernels are correct but far slower than cuDNN's.
    if (!slot->usable)
      std::fprintf(stderr, "meshtrain: %s: cuDNN offers no accepted algorithm for %s %s; using the direct kernels\n",
                   passName(prop), dtypeLabel(dtype), s.describe().c_str());
  }
  const Plan& p = *slot;
  if (!p.usable) return false;
  dnn9::Handle h = handleOf(dev, check);
  // The filter as cuDNN reads it: ours, or its [O, kh, kw, C / groups] copy (same stream, so the
  // copies are ordered with the convolution).
  const int64_t Cg = s.C / s.groups, ours[4] = {Cg * s.kh * s.kw, s.kh * s.kw, s.kw, 1},
                krsc[4] = {s.kh * s.kw * Cg, 1, s.kw * Cg, Cg}, fdims[4] = {s.O, Cg, s.kh, s.kw};
  // A copy only where w's layout is not the one cuDNN reads; a 1x1 filter is [O, C / groups] in
  // both, so cuDNN reads and writes it in place.
  const bool copyFilter = nhwcFilter != filterNhwc && s.kh * s.kw > 1;
  const int64_t* wStrides = filterNhwc ? krsc : ours;
  const int64_t* fStrides = nhwcFilter ? krsc : ours;
  void* f = w;
  if (copyFilter) {
    f = scratch(s.O * Cg * s.kh * s.kw * (dtype == int(DType::F32) ? 4 : 2));
    if (prop != kConvBackwardWeights) cudaCopyStrided(dev, dtype, w, wStrides, dtype, f, fStrides, fdims, 4);
  }
  if (fresh) choose(dev, prop, dtype, s, *slot, h, a, f, b, scratch);
  void* ws = p.workspace ? scratch(int64_t(p.workspace)) : nullptr;
  const float one = 1.0f, zero = 0.0f;  // float scaling for every non-double data type
  MT_CENSUS_CALL("library", std::string(passName(prop)) + " " + dtypeLabel(dtype),
                 double(dtype == int(DType::F32) ? 4 : 2) *
                     double(s.N * s.C * s.H * s.W + s.N * s.O * s.OH() * s.OW() + s.O * Cg * s.kh * s.kw));
  cudaUseDevice(dev);
  if (prop == kConvForward)
    check(api->forward(h, &one, p.a, a, p.w, f, p.conv, p.algo, ws, p.workspace, &zero, p.b, b),
          "cudnnConvolutionForward");
  else if (prop == kConvBackwardData)
    check(api->backwardData(h, &one, p.w, f, p.a, a, p.conv, p.algo, ws, p.workspace, &zero, p.b, b),
          "cudnnConvolutionBackwardData");
  else
    check(api->backwardFilter(h, &one, p.a, a, p.b, b, p.conv, p.algo, ws, p.workspace, &zero, p.w, f),
          "cudnnConvolutionBackwardFilter");
  MT_CENSUS_DONE(computeStream(dev));  // the handle's stream
  if (copyFilter && prop == kConvBackwardWeights) cudaCopyStrided(dev, dtype, f, fStrides, dtype, w, wStrides, fdims, 4);
  return true;
}

}  // namespace mt
#endif
