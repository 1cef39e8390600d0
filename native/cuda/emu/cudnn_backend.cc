// The reference cuDNN's graph (backend) API (test tool): the descriptor calls attention_cudnn.cc's
// SDPA graphs use, checked strictly (cudnnBackendExecute, which runs the graph, is in
// emu/cudnn_graph_run.cc). Every attribute must belong to its descriptor type, with the attribute
// type and element count cuDNN documents (enum elements 4 bytes, BOOLEAN 1); descriptor elements
// must be finalized and of the right type; a descriptor is finalized once, with its required
// attributes; operations check their tensors' ranks and shapes (broadcast, matmul [.., M, K] x
// [.., K, N] -> [.., M, N], reductions to size-1 dims, reshape of equal counts, GEN_INDEX/CMP/
// BINARY_SELECT types); the graph checks unique uids, each virtual tensor made once and read, no
// cycle. Accepting a graph here does not prove cuDNN's engines accept it: only the pattern's
// arithmetic (emu/cudnn_graph_run.cc) and our plumbing are checked.
// MESHTRAIN_CUDA_EMU_CUDNN_ENGINES=n: the heuristics offer n engine configs (default 1; 0 tests a
// caller's no-engine path).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>
#include "cudnn_common.h"
#include "cudnn_graph_desc.h"

namespace {

using namespace mtdnn;
using namespace mtdnn::graph;

int elemSize(int t) {
  switch (t) {
    case g::kTypeBoolean: return 1;
    case g::kTypeDataType: case g::kTypeFloat: case g::kTypeHeurMode: case g::kTypePointwiseMode: case g::kTypeReductionOp: return 4;
    default: return 8;
  }
}

// The attributes each descriptor type takes: attribute type, least and most elements.
struct Spec {
  int type;
  int64_t lo, hi;
};
const std::map<std::pair<int, int>, Spec>& specs() {
  static const std::map<std::pair<int, int>, Spec> m = {
      {{g::kTensorDesc, g::kTensorUid}, {g::kTypeInt64, 1, 1}},
      {{g::kTensorDesc, g::kTensorDataType}, {g::kTypeDataType, 1, 1}},
      {{g::kTensorDesc, g::kTensorDims}, {g::kTypeInt64, 1, 8}},
      {{g::kTensorDesc, g::kTensorStrides}, {g::kTypeInt64, 1, 8}},
      {{g::kTensorDesc, g::kTensorByteAlignment}, {g::kTypeInt64, 1, 1}},
      {{g::kTensorDesc, g::kTensorIsVirtual}, {g::kTypeBoolean, 1, 1}},
      {{g::kTensorDesc, g::kTensorIsByValue}, {g::kTypeBoolean, 1, 1}},
      {{g::kPointwiseDesc, g::kPointwiseMode}, {g::kTypePointwiseMode, 1, 1}},
      {{g::kPointwiseDesc, g::kPointwiseMathPrec}, {g::kTypeDataType, 1, 1}},
      {{g::kPointwiseDesc, g::kPointwiseAxis}, {g::kTypeInt64, 1, 1}},
      {{g::kOpPointwiseDesc, g::kOpPointwisePwDesc}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpPointwiseDesc, g::kOpPointwiseX}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpPointwiseDesc, g::kOpPointwiseB}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpPointwiseDesc, g::kOpPointwiseT}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpPointwiseDesc, g::kOpPointwiseY}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpPointwiseDesc, g::kOpPointwiseAlpha1}, {g::kTypeFloat, 1, 1}},
      {{g::kOpPointwiseDesc, g::kOpPointwiseAlpha2}, {g::kTypeFloat, 1, 1}},
      {{g::kMatmulDesc, g::kMatmulCompType}, {g::kTypeDataType, 1, 1}},
      {{g::kOpMatmulDesc, g::kOpMatmulA}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpMatmulDesc, g::kOpMatmulB}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpMatmulDesc, g::kOpMatmulC}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpMatmulDesc, g::kOpMatmulDescriptor}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kReductionDesc, g::kReductionOperator}, {g::kTypeReductionOp, 1, 1}},
      {{g::kReductionDesc, g::kReductionCompType}, {g::kTypeDataType, 1, 1}},
      {{g::kOpReductionDesc, g::kOpReductionX}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpReductionDesc, g::kOpReductionY}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpReductionDesc, g::kOpReductionDescriptor}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpReshapeDesc, g::kOpReshapeX}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpReshapeDesc, g::kOpReshapeY}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kOpGraphDesc, g::kOpGraphOps}, {g::kTypeBackendDesc, 1, 1 << 20}},
      {{g::kOpGraphDesc, g::kOpGraphHandle}, {g::kTypeHandle, 1, 1}},
      {{g::kEngineHeurDesc, g::kHeurOpGraph}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kEngineHeurDesc, g::kHeurMode}, {g::kTypeHeurMode, 1, 1}},
      {{g::kExecutionPlanDesc, g::kPlanHandle}, {g::kTypeHandle, 1, 1}},
      {{g::kExecutionPlanDesc, g::kPlanEngineCfg}, {g::kTypeBackendDesc, 1, 1}},
      {{g::kVariantPackDesc, g::kVariantPackUids}, {g::kTypeInt64, 0, 1 << 20}},
      {{g::kVariantPackDesc, g::kVariantPackPointers}, {g::kTypeVoidPtr, 0, 1 << 20}},
      {{g::kVariantPackDesc, g::kVariantPackWorkspace}, {g::kTypeVoidPtr, 1, 1}},
  };
  return m;
}

// Which descriptor type a descriptor-valued attribute must point to (-1: an operation).
int pointee(int name) {
  switch (name) {
    case g::kOpPointwisePwDesc: return g::kPointwiseDesc;
    case g::kOpMatmulDescriptor: return g::kMatmulDesc;
    case g::kOpReductionDescriptor: return g::kReductionDesc;
    case g::kOpGraphOps: return -1;
    case g::kHeurOpGraph: return g::kOpGraphDesc;
    case g::kPlanEngineCfg: return g::kEngineCfgDesc;
    default: return g::kTensorDesc;
  }
}

bool isOp(int t) {
  return t == g::kOpPointwiseDesc || t == g::kOpMatmulDesc || t == g::kOpReductionDesc || t == g::kOpReshapeDesc;
}

bool floatType(int dt) { return dt == kFloat || dt == kHalf || dt == kBf16; }

// Checks an operation's tensors when it is finalized; "" when consistent.
std::string checkOp(const Desc& o) {
  if (o.type == g::kOpPointwiseDesc) {
    if (auto e = need(o, {g::kOpPointwisePwDesc, g::kOpPointwiseX, g::kOpPointwiseY}); !e.empty()) return e;
    const Desc& pw = *descOf(o, g::kOpPointwisePwDesc);
    const int mode = one<int>(pw, g::kPointwiseMode, -1);
    const Desc *x = descOf(o, g::kOpPointwiseX), *b = descOf(o, g::kOpPointwiseB), *t = descOf(o, g::kOpPointwiseT),
               *y = descOf(o, g::kOpPointwiseY);
    const bool unary = mode == g::kExp || mode == g::kLog || mode == g::kIdentity || mode == g::kGenIndex;
    if (unary != (b == nullptr)) return unary ? "a unary mode with a B tensor" : "a binary mode without a B tensor";
    if ((mode == g::kBinarySelect) != (t != nullptr)) return "BINARY_SELECT takes a T tensor, nothing else does";
    for (float a : {one<float>(o, g::kOpPointwiseAlpha1, 1.f), one<float>(o, g::kOpPointwiseAlpha2, 1.f)})
      if (a != 1.f) return "alpha other than 1 is not emulated";
    for (const Desc* in : {x, b, t}) {
      if (!in) continue;
      if (in->dims.size() != y->dims.size()) return "operand rank differs from the output's";
      for (size_t i = 0; i < y->dims.size(); i++)
        if (in->dims[i] != y->dims[i] && in->dims[i] != 1) return "operand does not broadcast to the output";
    }
    if (mode == g::kGenIndex) {
      const int64_t axis = one<int64_t>(pw, g::kPointwiseAxis, -1);
      if (axis < 0 || axis >= int64_t(y->dims.size())) return "GEN_INDEX axis out of range";
      if (y->dt != 4 || x->dims != y->dims) return "GEN_INDEX makes an INT32 tensor of its input's shape";
    }
    if (mode == g::kCmpGe && (y->dt != g::kBoolean || one<int>(pw, g::kPointwiseMathPrec, -1) != g::kBoolean))
      return "a comparison outputs BOOLEAN computed in BOOLEAN";
    if (mode == g::kBinarySelect && t->dt != g::kBoolean) return "BINARY_SELECT's T is not BOOLEAN";
    if (mode != g::kGenIndex && mode != g::kCmpGe && !floatType(y->dt)) return "arithmetic into a non-float tensor";
    return "";
  }
  if (o.type == g::kOpMatmulDesc) {
    if (auto e = need(o, {g::kOpMatmulA, g::kOpMatmulB, g::kOpMatmulC, g::kOpMatmulDescriptor}); !e.empty()) return e;
    const Desc &a = *descOf(o, g::kOpMatmulA), &b = *descOf(o, g::kOpMatmulB), &c = *descOf(o, g::kOpMatmulC);
    const size_t n = c.dims.size();
    if (n < 2 || a.dims.size() != n || b.dims.size() != n) return "matmul operands of different ranks";
    if (a.dims[n - 1] != b.dims[n - 2] || c.dims[n - 2] != a.dims[n - 2] || c.dims[n - 1] != b.dims[n - 1])
      return "matmul shapes do not chain ([.., M, K] x [.., K, N] -> [.., M, N])";
    for (size_t i = 0; i + 2 < n; i++)
      if ((a.dims[i] != c.dims[i] && a.dims[i] != 1) || (b.dims[i] != c.dims[i] && b.dims[i] != 1)) return "matmul batch dims";
    if (!floatType(a.dt) || !floatType(b.dt) || !floatType(c.dt)) return "matmul of non-float tensors";
    return "";
  }
  if (o.type == g::kOpReductionDesc) {
    if (auto e = need(o, {g::kOpReductionDescriptor, g::kOpReductionX, g::kOpReductionY}); !e.empty()) return e;
    const Desc &x = *descOf(o, g::kOpReductionX), &y = *descOf(o, g::kOpReductionY);
    if (x.dims.size() != y.dims.size()) return "reduction ranks differ";
    for (size_t i = 0; i < x.dims.size(); i++)
      if (y.dims[i] != x.dims[i] && y.dims[i] != 1) return "a reduced dim must be 1 in the output";
    return "";
  }
  if (auto e = need(o, {g::kOpReshapeX, g::kOpReshapeY}); !e.empty()) return e;
  if (count(*descOf(o, g::kOpReshapeX)) != count(*descOf(o, g::kOpReshapeY))) return "reshape changes the element count";
  return "";
}

// Orders the graph's operations by dependency and checks its tensors; "" when valid.
std::string checkGraph(Desc& gr) {
  const auto ops = values<Desc*>(gr, g::kOpGraphOps);
  std::map<int64_t, Desc*> byUid;
  std::map<Desc*, Desc*> producer;
  std::map<Desc*, int> reads;
  for (Desc* o : ops) {
    for (Desc* t : inputsOf(*o)) reads[t]++;
    Desc* y = outputOf(*o);
    if (producer.count(y)) return "tensor uid " + std::to_string(y->uid) + " is written by two operations";
    producer[y] = o;
    for (Desc* t : inputsOf(*o))
      if (t == y) return "an operation reads its own output";
  }
  for (Desc* o : ops)
    for (Desc* t : inputsOf(*o)) {
      auto [it, fresh] = byUid.emplace(t->uid, t);
      if (!fresh && it->second != t) return "two tensors share uid " + std::to_string(t->uid);
      if (t->isVirtual && !producer.count(t)) return "virtual tensor uid " + std::to_string(t->uid) + " is read but never written";
    }
  for (auto& [y, o] : producer) {
    auto [it, fresh] = byUid.emplace(y->uid, y);
    if (!fresh && it->second != y) return "two tensors share uid " + std::to_string(y->uid);
    if (y->isVirtual && !reads.count(y)) return "virtual tensor uid " + std::to_string(y->uid) + " is written but never read";
    if (y->byValue) return "an operation writes a by-value tensor";
  }
  std::set<Desc*> done;
  gr.order.clear();
  while (gr.order.size() < ops.size()) {
    size_t before = gr.order.size();
    for (Desc* o : ops) {
      if (done.count(o)) continue;
      bool ready = true;
      for (Desc* t : inputsOf(*o)) ready = ready && (!producer.count(t) || done.count(producer[t]));
      if (ready) done.insert(o), gr.order.push_back(o);
    }
    if (gr.order.size() == before) return "the graph has a cycle";
  }
  return "";
}

std::string finalizeCheck(Desc& d) {
  switch (d.type) {
    case g::kTensorDesc: {
      if (auto e = need(d, {g::kTensorUid, g::kTensorDataType, g::kTensorDims, g::kTensorStrides, g::kTensorByteAlignment}); !e.empty())
        return e;
      d.uid = one<int64_t>(d, g::kTensorUid, -1);
      d.dt = one<int>(d, g::kTensorDataType, -1);
      d.dims = values<int64_t>(d, g::kTensorDims);
      d.strides = values<int64_t>(d, g::kTensorStrides);
      d.align = one<int64_t>(d, g::kTensorByteAlignment, 0);
      d.isVirtual = one<bool>(d, g::kTensorIsVirtual, false);
      d.byValue = one<bool>(d, g::kTensorIsByValue, false);
      if (d.dims.size() != d.strides.size()) return "dims and strides of different lengths";
      for (size_t i = 0; i < d.dims.size(); i++)
        if (d.dims[i] < 1 || d.strides[i] < 1) return "a dim or stride below 1";
      if (!floatType(d.dt) && d.dt != 4 && d.dt != g::kBoolean) return "data type " + std::to_string(d.dt);
      if (d.align < 1 || (d.align & (d.align - 1))) return "byte alignment is not a power of two";
      if (d.byValue && (d.isVirtual || count(d) != 1)) return "a by-value tensor must be one non-virtual element";
      return "";
    }
    case g::kPointwiseDesc:
      if (auto e = need(d, {g::kPointwiseMode, g::kPointwiseMathPrec}); !e.empty()) return e;
      return one<int>(d, g::kPointwiseMode, -1) == g::kGenIndex && !has(d, g::kPointwiseAxis) ? "GEN_INDEX needs an axis" : "";
    case g::kMatmulDesc: return need(d, {g::kMatmulCompType});
    case g::kReductionDesc: return need(d, {g::kReductionOperator, g::kReductionCompType});
    case g::kOpGraphDesc:
      if (auto e = need(d, {g::kOpGraphOps, g::kOpGraphHandle}); !e.empty()) return e;
      return checkGraph(d);
    case g::kEngineHeurDesc: return need(d, {g::kHeurOpGraph, g::kHeurMode});
    case g::kEngineCfgDesc: return "an engine config comes from the heuristics";
    case g::kExecutionPlanDesc: {
      if (auto e = need(d, {g::kPlanHandle, g::kPlanEngineCfg}); !e.empty()) return e;
      d.graph = descOf(d, g::kPlanEngineCfg)->graph;
      return "";
    }
    case g::kVariantPackDesc: {
      const auto uids = values<int64_t>(d, g::kVariantPackUids);
      const auto ptrs = values<void*>(d, g::kVariantPackPointers);
      if (uids.size() != ptrs.size()) return "uids and pointers of different counts";
      d.ptrs.clear();
      for (size_t i = 0; i < uids.size(); i++)
        if (!d.ptrs.emplace(uids[i], ptrs[i]).second) return "uid " + std::to_string(uids[i]) + " twice";
      d.ws = one<void*>(d, g::kVariantPackWorkspace, nullptr);
      return "";
    }
    default: return isOp(d.type) ? checkOp(d) : "descriptor type not emulated";
  }
}

}  // namespace

extern "C" {

int cudnnBackendCreateDescriptor(int type, void** out) {
  if (!out) return fail(kBadParam, "cudnnBackendCreateDescriptor: null output");
  const int known[] = {g::kPointwiseDesc, g::kEngineCfgDesc, g::kEngineHeurDesc, g::kExecutionPlanDesc, g::kOpPointwiseDesc,
                       g::kOpGraphDesc, g::kVariantPackDesc, g::kTensorDesc, g::kMatmulDesc, g::kOpMatmulDesc,
                       g::kReductionDesc, g::kOpReductionDesc, g::kOpReshapeDesc};
  if (std::find(std::begin(known), std::end(known), type) == std::end(known))
    return fail(kNotSupported, "cudnnBackendCreateDescriptor: descriptor type " + std::to_string(type) + " is not emulated");
  *out = new Desc{type};
  return kSuccess;
}

int cudnnBackendDestroyDescriptor(void* d) {
  delete static_cast<Desc*>(d);
  return kSuccess;
}

int cudnnBackendSetAttribute(void* dp, int name, int type, int64_t n, const void* elems) {
  Desc* d = static_cast<Desc*>(dp);
  const std::string at = "cudnnBackendSetAttribute(descriptor type " + std::to_string(d ? d->type : -1) + ", attribute " + std::to_string(name) + ")";
  if (!d) return fail(kBadParam, at + ": null descriptor");
  if (d->final) return fail(kBadParam, at + ": the descriptor is already finalized");
  auto it = specs().find({d->type, name});
  if (it == specs().end()) return fail(kBadParam, at + ": not an attribute of this descriptor type");
  const Spec& s = it->second;
  if (type != s.type) return fail(kBadParam, at + ": attribute type " + std::to_string(type) + ", expected " + std::to_string(s.type));
  if (n < s.lo || n > s.hi) return fail(kBadParam, at + ": " + std::to_string(n) + " elements");
  if (n > 0 && !elems) return fail(kBadParam, at + ": null elements");
  if (type == g::kTypeBackendDesc)
    for (int64_t i = 0; i < n; i++) {
      const Desc* e = static_cast<Desc* const*>(elems)[i];
      const int want = pointee(name);
      if (!e || !e->final) return fail(kBadParam, at + ": element " + std::to_string(i) + " is null or not finalized");
      if (want >= 0 ? e->type != want : !isOp(e->type)) return fail(kBadParam, at + ": element of the wrong descriptor type");
    }
  Attr a{type, std::vector<uint8_t>(size_t(n * elemSize(type))), n};
  if (n) std::memcpy(a.bytes.data(), elems, a.bytes.size());
  d->attrs[name] = std::move(a);
  return kSuccess;
}

int cudnnBackendFinalize(void* dp) {
  Desc* d = static_cast<Desc*>(dp);
  if (!d) return fail(kBadParam, "cudnnBackendFinalize: null descriptor");
  if (d->final) return fail(kBadParam, "cudnnBackendFinalize: already finalized");
  const std::string e = finalizeCheck(*d);
  if (!e.empty()) return fail(kBadParam, "cudnnBackendFinalize(descriptor type " + std::to_string(d->type) + "): " + e);
  d->final = true;
  return kSuccess;
}

int cudnnBackendGetAttribute(void* dp, int name, int type, int64_t requested, int64_t* n, void* elems) {
  Desc* d = static_cast<Desc*>(dp);
  if (!d || !d->final || !n) return fail(kBadParam, "cudnnBackendGetAttribute: null or unfinalized descriptor, or null count");
  if (d->type == g::kEngineHeurDesc && name == g::kHeurResults && type == g::kTypeBackendDesc) {
    const char* e = std::getenv("MESHTRAIN_CUDA_EMU_CUDNN_ENGINES");
    const int64_t engines = e && *e ? std::atoll(e) : 1;
    *n = requested == 0 ? engines : std::min(requested, engines);
    for (int64_t i = 0; requested > 0 && i < *n; i++) {
      Desc* cfg = static_cast<Desc**>(elems)[i];
      if (!cfg || cfg->type != g::kEngineCfgDesc || cfg->final) return fail(kBadParam, "heuristics results: give unfinalized engine configs");
      cfg->graph = descOf(*d, g::kHeurOpGraph);
      cfg->final = true;
    }
    return kSuccess;
  }
  if (d->type == g::kExecutionPlanDesc && name == g::kPlanWorkspaceSize && type == g::kTypeInt64 && requested == 1 && elems) {
    *n = 1;
    *static_cast<int64_t*>(elems) = kWorkspace;
    return kSuccess;
  }
  return fail(kNotSupported, "cudnnBackendGetAttribute: attribute " + std::to_string(name) + " is not emulated");
}

}  // extern "C"
