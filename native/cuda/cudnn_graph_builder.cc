#include "cuda/cudnn_graph_builder.h"

#include <utility>

namespace mt {

using namespace dnn9g;

CudnnGraphBuilder::~CudnnGraphBuilder() {
  if (keep_) return;
  for (auto it = owned_.rbegin(); it != owned_.rend(); ++it) api_.backendDestroy(*it);
}

void CudnnGraphBuilder::check(int status, const std::string& call) {
  if (status != dnn9::kSuccess)
    throw CudnnGraphError(call + ": " + api_.getErrorString(status) + " (cuDNN status " + std::to_string(status) + ")");
}

void* CudnnGraphBuilder::create(int type, const char* what) {
  void* d = nullptr;
  check(api_.backendCreate(type, &d), std::string("cudnnBackendCreateDescriptor(") + what + ")");
  owned_.push_back(d);
  return d;
}

void CudnnGraphBuilder::set(void* d, int name, int type, int64_t count, const void* v, const char* what) {
  check(api_.backendSetAttribute(d, name, type, count, v),
        std::string("cudnnBackendSetAttribute(") + what + ", attribute " + std::to_string(name) + ")");
}

void CudnnGraphBuilder::finalize(void* d, const char* what) {
  check(api_.backendFinalize(d), std::string("cudnnBackendFinalize(") + what + ")");
}

GTensor CudnnGraphBuilder::tensor(int type, const Dims4& dims, const Dims4& strides, bool isVirtual, bool byValue) {
  GTensor t{create(kTensorDesc, "tensor"), nextUid_++, type, dims, strides};
  const int64_t align = 16;  // cudnn-frontend's default; the caller checks its pointers against it
  const bool v = isVirtual, bv = byValue;
  set(t.desc, kTensorUid, kTypeInt64, 1, &t.uid, "tensor");
  set(t.desc, kTensorDataType, kTypeDataType, 1, &type, "tensor");
  set(t.desc, kTensorDims, kTypeInt64, 4, dims.data(), "tensor");
  set(t.desc, kTensorStrides, kTypeInt64, 4, strides.data(), "tensor");
  set(t.desc, kTensorByteAlignment, kTypeInt64, 1, &align, "tensor");
  set(t.desc, kTensorIsVirtual, kTypeBoolean, 1, &v, "tensor");
  if (bv) set(t.desc, kTensorIsByValue, kTypeBoolean, 1, &bv, "tensor");
  finalize(t.desc, ("tensor uid " + std::to_string(t.uid)).c_str());
  return t;
}

GTensor CudnnGraphBuilder::virt(int type, const Dims4& dims) {
  return tensor(type, dims, {dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1}, true);
}

void* CudnnGraphBuilder::op(int type, const char* what, std::initializer_list<std::pair<int, void*>> descs) {
  void* o = create(type, what);
  for (const auto& [name, d] : descs) set(o, name, kTypeBackendDesc, 1, &d, what);
  return o;
}

void CudnnGraphBuilder::pointwise(int mode, const GTensor& x, const GTensor* b, const GTensor* t, const GTensor& y,
                                  int mathPrec, int64_t axis) {
  void* pw = create(kPointwiseDesc, "pointwise");
  set(pw, kPointwiseMode, kTypePointwiseMode, 1, &mode, "pointwise");
  set(pw, kPointwiseMathPrec, kTypeDataType, 1, &mathPrec, "pointwise");
  if (mode == kGenIndex) set(pw, kPointwiseAxis, kTypeInt64, 1, &axis, "pointwise");
  finalize(pw, "pointwise");
  void* o = op(kOpPointwiseDesc, "pointwise operation", {{kOpPointwisePwDesc, pw}, {kOpPointwiseX, x.desc}, {kOpPointwiseY, y.desc}});
  if (b) set(o, kOpPointwiseB, kTypeBackendDesc, 1, &b->desc, "pointwise operation");
  if (t) set(o, kOpPointwiseT, kTypeBackendDesc, 1, &t->desc, "pointwise operation");
  const float one = 1.0f;  // cudnn-frontend sets both scaling constants to 1
  set(o, kOpPointwiseAlpha1, kTypeFloat, 1, &one, "pointwise operation");
  set(o, kOpPointwiseAlpha2, kTypeFloat, 1, &one, "pointwise operation");
  finalize(o, ("pointwise operation, mode " + std::to_string(mode) + ", output uid " + std::to_string(y.uid)).c_str());
  ops_.push_back(o);
}

void CudnnGraphBuilder::matmul(const GTensor& a, const GTensor& b, const GTensor& c) {
  void* mm = create(kMatmulDesc, "matmul");
  const int comp = kFloat;
  set(mm, kMatmulCompType, kTypeDataType, 1, &comp, "matmul");
  finalize(mm, "matmul");
  void* o = op(kOpMatmulDesc, "matmul operation", {{kOpMatmulA, a.desc}, {kOpMatmulB, b.desc}, {kOpMatmulC, c.desc}, {kOpMatmulDescriptor, mm}});
  finalize(o, ("matmul operation, output uid " + std::to_string(c.uid)).c_str());
  ops_.push_back(o);
}

void CudnnGraphBuilder::reduction(int rop, const GTensor& x, const GTensor& y) {
  void* r = create(kReductionDesc, "reduction");
  const int comp = kFloat;
  set(r, kReductionCompType, kTypeDataType, 1, &comp, "reduction");
  set(r, kReductionOperator, kTypeReductionOp, 1, &rop, "reduction");
  finalize(r, "reduction");
  void* o = op(kOpReductionDesc, "reduction operation", {{kOpReductionDescriptor, r}, {kOpReductionX, x.desc}, {kOpReductionY, y.desc}});
  finalize(o, ("reduction operation, output uid " + std::to_string(y.uid)).c_str());
  ops_.push_back(o);
}

void CudnnGraphBuilder::reshape(const GTensor& x, const GTensor& y) {
  void* o = op(kOpReshapeDesc, "reshape operation", {{kOpReshapeX, x.desc}, {kOpReshapeY, y.desc}});
  finalize(o, ("reshape operation, output uid " + std::to_string(y.uid)).c_str());
  ops_.push_back(o);
}

CudnnPlan CudnnGraphBuilder::build(dnn9::Handle handle) {
  void* graph = create(kOpGraphDesc, "operation graph");
  set(graph, kOpGraphOps, kTypeBackendDesc, int64_t(ops_.size()), ops_.data(), "operation graph");
  set(graph, kOpGraphHandle, kTypeHandle, 1, &handle, "operation graph");
  finalize(graph, "operation graph");

  void* heur = create(kEngineHeurDesc, "engine heuristics");
  const int mode = kHeurModeA;
  set(heur, kHeurOpGraph, kTypeBackendDesc, 1, &graph, "engine heuristics");
  set(heur, kHeurMode, kTypeHeurMode, 1, &mode, "engine heuristics");
  finalize(heur, "engine heuristics");
  int64_t n = 0;
  check(api_.backendGetAttribute(heur, kHeurResults, kTypeBackendDesc, 0, &n, nullptr),
        "cudnnBackendGetAttribute(engine heuristics, results count)");
  if (n < 1) throw CudnnGraphError("cuDNN's heuristics offer no engine for this graph");
  std::vector<void*> cfgs(static_cast<size_t>(n));
  for (auto& c : cfgs) c = create(kEngineCfgDesc, "engine config");
  int64_t got = 0;
  check(api_.backendGetAttribute(heur, kHeurResults, kTypeBackendDesc, n, &got, cfgs.data()),
        "cudnnBackendGetAttribute(engine heuristics, results)");
  std::string last = "no engine config";
  for (int64_t i = 0; i < got && i < n; i++) {
    void* plan = create(kExecutionPlanDesc, "execution plan");
    set(plan, kPlanHandle, kTypeHandle, 1, &handle, "execution plan");
    set(plan, kPlanEngineCfg, kTypeBackendDesc, 1, &cfgs[size_t(i)], "execution plan");
    const int st = api_.backendFinalize(plan);
    if (st != dnn9::kSuccess) {  // this engine refuses the graph: try the next one
      last = std::string(api_.getErrorString(st)) + " (cuDNN status " + std::to_string(st) + ")";
      continue;
    }
    CudnnPlan p{plan, 0};
    int64_t count = 0;
    check(api_.backendGetAttribute(plan, kPlanWorkspaceSize, kTypeInt64, 1, &count, &p.workspace),
          "cudnnBackendGetAttribute(execution plan, workspace size)");
    keep_ = true;
    return p;
  }
  throw CudnnGraphError("none of cuDNN's " + std::to_string(got) + " engine configs finalizes a plan; the last: " + last);
}

}  // namespace mt
