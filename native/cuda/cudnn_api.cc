#include "cuda/cudnn_api.h"

#include <dlfcn.h>
#include <mutex>
#include "cuda/dynlib.h"
#ifdef MESHTRAIN_CUDA_EMU
#include <cuda_runtime_api.h>  // mtEmuCaptureHook (emu/graph.cc)
#endif
#include "util/check.h"

namespace mt {
namespace {

struct State {
  std::once_flag once;
  DynLib lib;
  bool ok = false;
  std::string error;
  CudnnApi api{};
};

State& state() {
  static State s;
  return s;
}

template <typename F>
void bind(F*& fn, const DynLib& lib, const char* symbol) {
  fn = reinterpret_cast<F*>(cudaLibSymbol(lib, "libcudnn", symbol));
}

// cuDNN 9's libcudnn.so.9 is a shim that dlopens its sub-libraries by soname when first needed.
// Opening them here, from the shim's own folder, makes that lookup succeed where the folder is
// not on the loader's path (NVIDIA's wheels); a sub-library that is absent is left to cuDNN,
// whose status then names it.
void preloadSubLibraries(const std::string& shimPath) {
  const size_t slash = shimPath.rfind('/');
  if (slash == std::string::npos) return;
  const std::string dir = shimPath.substr(0, slash + 1);
  for (const char* name : {"libcudnn_graph.so.9", "libcudnn_engines_precompiled.so.9",
                           "libcudnn_engines_runtime_compiled.so.9", "libcudnn_heuristic.so.9", "libcudnn_ops.so.9",
                           "libcudnn_cnn.so.9"})
    dlopen((dir + name).c_str(), RTLD_NOW | RTLD_LOCAL);
  // The runtime-compiled engines (among them the fused attention ones) dlopen NVRTC by soname; NVIDIA's
  // wheels keep it in another folder (nvidia/cuda_nvrtc/lib, nvidia/cu13/lib). Opened here from the
  // same search as the other libraries, that lookup finds it loaded; absent, cuDNN says so.
  static DynLib nvrtc = openCudaLib("libnvrtc", {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"});
  (void)nvrtc;
}

void load() {
  State& s = state();
  s.lib = openCudaLib("libcudnn", {"libcudnn.so.9", "libcudnn.so"});
  if (!s.lib.handle) {
    s.error = s.lib.error;
    return;
  }
  preloadSubLibraries(s.lib.path);
  try {
    CudnnApi& a = s.api;
    bind(a.getVersion, s.lib, "cudnnGetVersion");
    bind(a.getErrorString, s.lib, "cudnnGetErrorString");
    bind(a.create, s.lib, "cudnnCreate");
    bind(a.setStream, s.lib, "cudnnSetStream");
    bind(a.createTensorDesc, s.lib, "cudnnCreateTensorDescriptor");
    bind(a.setTensorNd, s.lib, "cudnnSetTensorNdDescriptor");
    bind(a.destroyTensorDesc, s.lib, "cudnnDestroyTensorDescriptor");
    bind(a.createFilterDesc, s.lib, "cudnnCreateFilterDescriptor");
    bind(a.setFilterNd, s.lib, "cudnnSetFilterNdDescriptor");
    bind(a.destroyFilterDesc, s.lib, "cudnnDestroyFilterDescriptor");
    bind(a.createConvDesc, s.lib, "cudnnCreateConvolutionDescriptor");
    bind(a.setConvNd, s.lib, "cudnnSetConvolutionNdDescriptor");
    bind(a.setConvGroupCount, s.lib, "cudnnSetConvolutionGroupCount");
    bind(a.setConvMathType, s.lib, "cudnnSetConvolutionMathType");
    bind(a.destroyConvDesc, s.lib, "cudnnDestroyConvolutionDescriptor");
    bind(a.fwdAlgoV7, s.lib, "cudnnGetConvolutionForwardAlgorithm_v7");
    bind(a.bwdDataAlgoV7, s.lib, "cudnnGetConvolutionBackwardDataAlgorithm_v7");
    bind(a.bwdFilterAlgoV7, s.lib, "cudnnGetConvolutionBackwardFilterAlgorithm_v7");
    bind(a.fwdWorkspace, s.lib, "cudnnGetConvolutionForwardWorkspaceSize");
    bind(a.bwdDataWorkspace, s.lib, "cudnnGetConvolutionBackwardDataWorkspaceSize");
    bind(a.bwdFilterWorkspace, s.lib, "cudnnGetConvolutionBackwardFilterWorkspaceSize");
    bind(a.findFwd, s.lib, "cudnnFindConvolutionForwardAlgorithmEx");
    bind(a.findBwdData, s.lib, "cudnnFindConvolutionBackwardDataAlgorithmEx");
    bind(a.findBwdFilter, s.lib, "cudnnFindConvolutionBackwardFilterAlgorithmEx");
    bind(a.forward, s.lib, "cudnnConvolutionForward");
    bind(a.backwardData, s.lib, "cudnnConvolutionBackwardData");
    bind(a.backwardFilter, s.lib, "cudnnConvolutionBackwardFilter");
    bind(a.backendCreate, s.lib, "cudnnBackendCreateDescriptor");
    bind(a.backendDestroy, s.lib, "cudnnBackendDestroyDescriptor");
    bind(a.backendSetAttribute, s.lib, "cudnnBackendSetAttribute");
    bind(a.backendGetAttribute, s.lib, "cudnnBackendGetAttribute");
    bind(a.backendFinalize, s.lib, "cudnnBackendFinalize");
    bind(a.backendExecute, s.lib, "cudnnBackendExecute");
#ifdef MESHTRAIN_CUDA_EMU
    // The reference cuDNN records calls on capturing streams through the emulated runtime.
    reinterpret_cast<void (*)(decltype(&mtEmuCaptureHook))>(cudaLibSymbol(s.lib, "libcudnn", "mtEmuSetCaptureHook"))(&mtEmuCaptureHook);
#endif
    s.ok = true;
  } catch (const std::exception& e) {
    s.error = e.what();
  }
}

}  // namespace

const CudnnApi* cudnn(std::string* why) {
  std::call_once(state().once, load);
  if (!state().ok) {
    if (why) *why = state().error;
    return nullptr;
  }
  return &state().api;
}

LibraryReport cudnnReport() {
  LibraryReport r;
  r.name = "cudnn";
  std::string why;
  if (const CudnnApi* a = cudnn(&why)) {
    r.found = true;
    r.path = state().lib.path;
    // cuDNN 9 encodes major * 10000 + minor * 100 + patch; cuDNN 8 major * 1000 + minor * 100 + patch.
    const size_t v = a->getVersion();
    const size_t major = v >= 90000 ? v / 10000 : v / 1000;
    const size_t minor = v >= 90000 ? (v / 100) % 100 : (v % 1000) / 100;
    r.version = cat(major, ".", minor, ".", v % 100);
  } else {
    r.error = why;
  }
  return r;
}

}  // namespace mt
