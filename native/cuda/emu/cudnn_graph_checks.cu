// Self-checks of the reference cuDNN's graph API (test tool, emulation build only):
// `native.cudaEmuCudnnChecks.run()` makes one small graph per misuse cuDNN refuses (a wrong attribute
// type, a missing required attribute, a change after finalize, an unfinalized element, matmul
// shapes that do not chain, GEN_INDEX into a float tensor, a virtual tensor never read, two tensors
// sharing a uid, a variant pack missing or adding a uid, a misaligned pointer) and returns, per case,
// the call's status and the library's message; plus one well-formed matmul run for its result. For
// test/unit/cuda_emu_cudnn.test.ts: the emulator's acceptance of attention_cudnn.cc's graphs means
// something only if it refuses these.
#ifdef MESHTRAIN_CUDA_EMU
#include <napi.h>
#include <array>
#include <string>
#include <vector>
#include "cuda/cudnn_api.h"
#include "cuda/cudnn_graph.h"
#include "cuda/runtime.h"
#include "util/check.h"

namespace mt {
namespace {

using namespace dnn9g;

// Raw calls, each status kept: the first failure is what a case reports.
struct Raw {
  const CudnnApi& api;
  int status = 0;
  std::string where, message;
  std::vector<void*> owned;
  ~Raw() {
    for (void* d : owned) api.backendDestroy(d);
  }
  void note(int st, const char* call) {
    if (status == 0 && st != 0) status = st, where = call, message = api.getErrorString(st);
  }
  void* make(int type) {
    void* d = nullptr;
    note(api.backendCreate(type, &d), "create");
    owned.push_back(d);
    return d;
  }
  void set(void* d, int name, int type, int64_t n, const void* v) { note(api.backendSetAttribute(d, name, type, n, v), "set"); }
  void fin(void* d) { note(api.backendFinalize(d), "finalize"); }
  // A tensor of 4 dims; `skip` leaves one attribute out, `dtType` is the attribute type given for the data type.
  void* tensor(int64_t uid, int dt, std::array<int64_t, 4> dims, bool isVirtual, int skip = -1, int dtType = kTypeDataType) {
    void* t = make(kTensorDesc);
    std::array<int64_t, 4> st{dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1};
    const int64_t align = 16, dt64 = dt;
    const bool v = isVirtual;
    if (skip != kTensorUid) set(t, kTensorUid, kTypeInt64, 1, &uid);
    if (dtType == kTypeDataType) set(t, kTensorDataType, kTypeDataType, 1, &dt);
    else set(t, kTensorDataType, dtType, 1, &dt64);
    set(t, kTensorDims, kTypeInt64, 4, dims.data());
    set(t, kTensorStrides, kTypeInt64, 4, st.data());
    if (skip != kTensorByteAlignment) set(t, kTensorByteAlignment, kTypeInt64, 1, &align);
    set(t, kTensorIsVirtual, kTypeBoolean, 1, &v);
    fin(t);
    return t;
  }
  void* matmul(void* a, void* b, void* c) {
    void* mm = make(kMatmulDesc);
    const int comp = kFloat;
    set(mm, kMatmulCompType, kTypeDataType, 1, &comp);
    fin(mm);
    void* o = make(kOpMatmulDesc);
    set(o, kOpMatmulA, kTypeBackendDesc, 1, &a);
    set(o, kOpMatmulB, kTypeBackendDesc, 1, &b);
    set(o, kOpMatmulC, kTypeBackendDesc, 1, &c);
    set(o, kOpMatmulDescriptor, kTypeBackendDesc, 1, &mm);
    fin(o);
    return o;
  }
  void* unary(int mode, void* x, void* y) {
    void* pw = make(kPointwiseDesc);
    const int prec = kFloat;
    const int64_t axis = 3;
    set(pw, kPointwiseMode, kTypePointwiseMode, 1, &mode);
    set(pw, kPointwiseMathPrec, kTypeDataType, 1, &prec);
    if (mode == kGenIndex) set(pw, kPointwiseAxis, kTypeInt64, 1, &axis);
    fin(pw);
    void* o = make(kOpPointwiseDesc);
    set(o, kOpPointwisePwDesc, kTypeBackendDesc, 1, &pw);
    set(o, kOpPointwiseX, kTypeBackendDesc, 1, &x);
    set(o, kOpPointwiseY, kTypeBackendDesc, 1, &y);
    fin(o);
    return o;
  }
  // Graph, heuristics' first config, plan.
  void* plan(dnn9::Handle h, std::vector<void*> ops) {
    void* g = make(kOpGraphDesc);
    set(g, kOpGraphOps, kTypeBackendDesc, int64_t(ops.size()), ops.data());
    set(g, kOpGraphHandle, kTypeHandle, 1, &h);
    fin(g);
    if (status) return nullptr;
    void* heur = make(kEngineHeurDesc);
    const int mode = kHeurModeA;
    set(heur, kHeurOpGraph, kTypeBackendDesc, 1, &g);
    set(heur, kHeurMode, kTypeHeurMode, 1, &mode);
    fin(heur);
    void* cfg = make(kEngineCfgDesc);
    int64_t n = 0;
    note(api.backendGetAttribute(heur, kHeurResults, kTypeBackendDesc, 1, &n, &cfg), "heuristics");
    void* p = make(kExecutionPlanDesc);
    set(p, kPlanHandle, kTypeHandle, 1, &h);
    set(p, kPlanEngineCfg, kTypeBackendDesc, 1, &cfg);
    fin(p);
    return p;
  }
  void execute(dnn9::Handle h, void* plan, std::vector<int64_t> uids, std::vector<void*> ptrs, void* ws) {
    void* vp = make(kVariantPackDesc);
    set(vp, kVariantPackUids, kTypeInt64, int64_t(uids.size()), uids.data());
    set(vp, kVariantPackPointers, kTypeVoidPtr, int64_t(ptrs.size()), ptrs.data());
    set(vp, kVariantPackWorkspace, kTypeVoidPtr, 1, &ws);
    fin(vp);
    if (status == 0) note(api.backendExecute(h, plan, vp), "execute");
  }
};

Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string why;
  const CudnnApi* api = cudnn(&why);
  MT_CHECK(api, "cudaEmuCudnnChecks: ", why);
  dnn9::Handle h = nullptr;
  MT_CHECK(api->create(&h) == 0, "cudaEmuCudnnChecks: cudnnCreate");
  // Host memory is device memory on the emulator; 16-byte aligned buffers.
  alignas(16) static float a[32], b[32], c[16], ws[1024];
  for (int i = 0; i < 32; i++) a[i] = float(i % 5) - 2, b[i] = float(i % 3) - 1;
  Napi::Object out = Napi::Object::New(env);
  auto record = [&](const char* name, Raw& r) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("status", r.status);
    o.Set("call", r.where);
    o.Set("message", r.message);
    out.Set(name, o);
  };
  // C [1,1,4,4] = A [1,1,4,8] · B [1,1,8,4], each case breaking one thing.
  auto mm = [&](Raw& r, bool bChains = true) {
    void* A = r.tensor(1, kFloat, {1, 1, 4, 8}, false);
    void* B = r.tensor(2, kFloat, bChains ? std::array<int64_t, 4>{1, 1, 8, 4} : std::array<int64_t, 4>{1, 1, 4, 8}, false);
    void* C = r.tensor(3, kFloat, {1, 1, 4, 4}, false);
    return std::vector<void*>{A, B, C};
  };
  {
    Raw r{*api};
    auto t = mm(r);
    void* p = r.plan(h, {r.matmul(t[0], t[1], t[2])});
    r.execute(h, p, {1, 2, 3}, {a, b, c}, ws);
    record("valid", r);
    Napi::Array vals = Napi::Array::New(env, 16);
    for (uint32_t i = 0; i < 16; i++) vals.Set(i, c[i]);
    out.Set("validC", vals);
  }
  { Raw r{*api}; r.tensor(1, kFloat, {1, 1, 4, 8}, false, -1, kTypeInt64); record("dataTypeAsInt64", r); }
  { Raw r{*api}; r.tensor(1, kFloat, {1, 1, 4, 8}, false, kTensorByteAlignment); record("noAlignment", r); }
  {
    Raw r{*api};
    void* t = r.tensor(1, kFloat, {1, 1, 4, 8}, false);
    const int64_t uid = 9;
    r.set(t, kTensorUid, kTypeInt64, 1, &uid);
    record("setAfterFinalize", r);
  }
  {
    Raw r{*api};
    void* A = r.make(kTensorDesc);  // never finalized
    void* o = r.make(kOpMatmulDesc);
    r.set(o, kOpMatmulA, kTypeBackendDesc, 1, &A);
    record("unfinalizedElement", r);
  }
  { Raw r{*api}; auto t = mm(r, false); r.matmul(t[0], t[1], t[2]); record("matmulShapes", r); }
  {
    Raw r{*api};
    void* x = r.tensor(1, kFloat, {1, 1, 4, 8}, false);
    void* y = r.tensor(2, kFloat, {1, 1, 4, 8}, false);
    r.unary(kGenIndex, x, y);
    record("genIndexIntoFloat", r);
  }
  {
    Raw r{*api};
    auto t = mm(r);
    void* v = r.tensor(4, kFloat, {1, 1, 4, 4}, true);
    r.plan(h, {r.matmul(t[0], t[1], t[2]), r.unary(kExp, t[2], v)});
    record("virtualNeverRead", r);
  }
  {
    Raw r{*api};
    void* A = r.tensor(1, kFloat, {1, 1, 4, 8}, false);
    void* B = r.tensor(1, kFloat, {1, 1, 8, 4}, false);
    void* C = r.tensor(3, kFloat, {1, 1, 4, 4}, false);
    r.plan(h, {r.matmul(A, B, C)});
    record("sharedUid", r);
  }
  for (const char* name : {"missingUid", "extraUid", "misaligned"}) {
    Raw r{*api};
    auto t = mm(r);
    void* p = r.plan(h, {r.matmul(t[0], t[1], t[2])});
    const std::string n = name;
    if (n == "missingUid") r.execute(h, p, {1, 2}, {a, b}, ws);
    if (n == "extraUid") r.execute(h, p, {1, 2, 3, 4}, {a, b, c, c}, ws);
    if (n == "misaligned") r.execute(h, p, {1, 2, 3}, {a + 1, b, c}, ws);
    record(name, r);
  }
  return out;
}

}  // namespace

void registerCudaEmuCudnnChecks(Napi::Env env, Napi::Object exports) {
  auto o = Napi::Object::New(env);
  MT_EXPORT(o, "run", Run);
  exports.Set("cudaEmuCudnnChecks", o);
}

}  // namespace mt
#endif
