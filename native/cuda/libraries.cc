#include "cuda/libraries.h"

#include <dlfcn.h>
#include <mutex>
#include "cuda/dynlib.h"
#ifdef MESHTRAIN_CUDA_EMU
#include <cuda_runtime_api.h>  // mtEmuCaptureHook (emu/graph.cc)
#endif
#include "util/check.h"

namespace mt {
namespace {

template <typename F>
void bind(F*& fn, const DynLib& lib, const char* what, const char* symbol) {
  fn = reinterpret_cast<F*>(cudaLibSymbol(lib, what, symbol));
}

struct Loaded {
  std::once_flag once;
  DynLib lib;
  bool ok = false;
  std::string error;
};

Loaded& ltState() {
  static Loaded s;
  return s;
}
CublasLtApi& ltApi() {
  static CublasLtApi a{};
  return a;
}

Loaded& ncclState() {
  static Loaded s;
  return s;
}
NcclApi& ncclApi() {
  static NcclApi a{};
  return a;
}

void loadCublasLt() {
  Loaded& s = ltState();
  const char* what = "libcublasLt";
  s.lib = openCudaLib(what, {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"});
  if (!s.lib.handle) {
    s.error = s.lib.error;
    return;
  }
  try {
    CublasLtApi& a = ltApi();
    bind(a.getVersion, s.lib, what, "cublasLtGetVersion");
    bind(a.create, s.lib, what, "cublasLtCreate");
    bind(a.matmulDescCreate, s.lib, what, "cublasLtMatmulDescCreate");
    bind(a.matmulDescSetAttribute, s.lib, what, "cublasLtMatmulDescSetAttribute");
    bind(a.matmulDescDestroy, s.lib, what, "cublasLtMatmulDescDestroy");
    bind(a.layoutCreate, s.lib, what, "cublasLtMatrixLayoutCreate");
    bind(a.layoutSetAttribute, s.lib, what, "cublasLtMatrixLayoutSetAttribute");
    bind(a.layoutDestroy, s.lib, what, "cublasLtMatrixLayoutDestroy");
    bind(a.preferenceCreate, s.lib, what, "cublasLtMatmulPreferenceCreate");
    bind(a.preferenceSetAttribute, s.lib, what, "cublasLtMatmulPreferenceSetAttribute");
    bind(a.preferenceDestroy, s.lib, what, "cublasLtMatmulPreferenceDestroy");
    bind(a.algoGetHeuristic, s.lib, what, "cublasLtMatmulAlgoGetHeuristic");
    bind(a.matmul, s.lib, what, "cublasLtMatmul");
#ifdef MESHTRAIN_CUDA_EMU
    // The reference cuBLASLt records calls on capturing streams through the emulated runtime.
    reinterpret_cast<void (*)(decltype(&mtEmuCaptureHook))>(cudaLibSymbol(s.lib, what, "mtEmuSetCaptureHook"))(&mtEmuCaptureHook);
#endif
    s.ok = true;
  } catch (const std::exception& e) {
    s.error = e.what();
  }
}

void loadNccl() {
  Loaded& s = ncclState();
  const char* what = "libnccl";
  s.lib = openCudaLib(what, {"libnccl.so.2", "libnccl.so"});
  if (!s.lib.handle) {
    s.error = s.lib.error;
    return;
  }
  try {
    NcclApi& a = ncclApi();
    bind(a.getVersion, s.lib, what, "ncclGetVersion");
    bind(a.getErrorString, s.lib, what, "ncclGetErrorString");
    bind(a.getUniqueId, s.lib, what, "ncclGetUniqueId");
    bind(a.commInitRank, s.lib, what, "ncclCommInitRank");
    bind(a.commGetAsyncError, s.lib, what, "ncclCommGetAsyncError");
    bind(a.commAbort, s.lib, what, "ncclCommAbort");
    bind(a.commDestroy, s.lib, what, "ncclCommDestroy");
    bind(a.allReduce, s.lib, what, "ncclAllReduce");
    bind(a.reduce, s.lib, what, "ncclReduce");
    bind(a.reduceScatter, s.lib, what, "ncclReduceScatter");
    bind(a.allGather, s.lib, what, "ncclAllGather");
    bind(a.broadcast, s.lib, what, "ncclBroadcast");
    bind(a.send, s.lib, what, "ncclSend");
    bind(a.recv, s.lib, what, "ncclRecv");
    bind(a.groupStart, s.lib, what, "ncclGroupStart");
    bind(a.groupEnd, s.lib, what, "ncclGroupEnd");
    // Newer than the rest (2.14, 2.18): null when absent; the communicator falls back without them.
    a.commInitRankConfig = reinterpret_cast<decltype(a.commInitRankConfig)>(dlsym(s.lib.handle, "ncclCommInitRankConfig"));
    a.commSplit = reinterpret_cast<decltype(a.commSplit)>(dlsym(s.lib.handle, "ncclCommSplit"));
    a.commFinalize = reinterpret_cast<decltype(a.commFinalize)>(dlsym(s.lib.handle, "ncclCommFinalize"));
    s.ok = true;
  } catch (const std::exception& e) {
    s.error = e.what();
  }
}

}  // namespace

const CublasLtApi* cublasLt(std::string* why) {
  std::call_once(ltState().once, loadCublasLt);
  if (!ltState().ok) {
    if (why) *why = ltState().error;
    return nullptr;
  }
  return &ltApi();
}

const NcclApi* nccl(std::string* why) {
  std::call_once(ncclState().once, loadNccl);
  if (!ncclState().ok) {
    if (why) *why = ncclState().error;
    return nullptr;
  }
  return &ncclApi();
}

LibraryReport cublasLtReport() {
  LibraryReport r;
  r.name = "cublasLt";
  std::string why;
  if (const CublasLtApi* a = cublasLt(&why)) {
    r.found = true;
    r.path = ltState().lib.path;
    size_t v = a->getVersion();  // major * 10000 + minor * 100 + patch
    r.version = cat(v / 10000, ".", (v / 100) % 100, ".", v % 100);
  } else {
    r.error = why;
  }
  return r;
}

LibraryReport ncclReport() {
  LibraryReport r;
  r.name = "nccl";
  std::string why;
  if (const NcclApi* a = nccl(&why)) {
    r.found = true;
    r.path = ncclState().lib.path;
    int v = 0;
    a->getVersion(&v);  // major * 10000 + minor * 100 + patch since 2.9
    r.version = cat(v / 10000, ".", (v / 100) % 100, ".", v % 100);
  } else {
    r.error = why;
  }
  return r;
}

}  // namespace mt
