// cuDNN's timed algorithm search (see conv_cudnn_search.h). Find overwrites the output it is given
// and backward-filter's output may be a .grad being accumulated, so every search writes scratch.
#ifdef MESHTRAIN_CUDA
#include "cuda/conv_cudnn_search.h"
#include <cstdlib>
#include <cstring>
#include <string>
#include "cuda/census.h"
#include "cuda/host_sync.h"
#include "cuda/runtime.h"
#include "util/check.h"

namespace mt {
namespace {

constexpr int kMaxResults = 16;

bool envIs(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v && std::strcmp(v, value) == 0;
}

const char* findName(CudaConvProp prop) {
  return prop == kConvForward         ? "cudnnFindConvolutionForwardAlgorithmEx"
         : prop == kConvBackwardData ? "cudnnFindConvolutionBackwardDataAlgorithmEx"
                                     : "cudnnFindConvolutionBackwardFilterAlgorithmEx";
}

}  // namespace

bool cudnnBenchmarkOn() {
  const char* v = std::getenv("MESHTRAIN_CUDNN_BENCHMARK");
  return v && *v && std::strcmp(v, "0") != 0;
}

bool cudnnDeterministicOnly() { return !envIs("MESHTRAIN_CUDNN_DETERMINISTIC", "0"); }

ConvSearchResult searchConvAlgo(int dev, const ConvSearchProblem& p, bool f32, bool deterministicOnly,
                                const std::function<void*(int64_t)>& scratch, const char* what) {
  const CudnnApi& api = *p.api;
  void* out = scratch(int64_t(p.outBytes));
  void* ws = p.workspaceBound ? scratch(int64_t(p.workspaceBound)) : nullptr;
  const char* call = findName(p.prop);
  // Find times with its own events and waits for them: a host wait like any other we count.
  countHostSync(dev);
  dnn9::AlgoPerf perf[kMaxResults] = {};
  int n = 0;
  MT_CENSUS_CALL("library", std::string("cudnnFind ") + what, double(p.outBytes));
  cudaUseDevice(dev);
  const int st =
      p.prop == kConvForward
          ? api.findFwd(p.handle, p.a, p.in0, p.w, p.in1, p.conv, p.b, out, kMaxResults, &n, perf, ws, p.workspaceBound)
      : p.prop == kConvBackwardData
          ? api.findBwdData(p.handle, p.w, p.in0, p.a, p.in1, p.conv, p.b, out, kMaxResults, &n, perf, ws,
                            p.workspaceBound)
          : api.findBwdFilter(p.handle, p.a, p.in0, p.b, p.in1, p.conv, p.w, out, kMaxResults, &n, perf, ws,
                              p.workspaceBound);
  MT_CENSUS_DONE(computeStream(dev));
  MT_CHECK(st == dnn9::kSuccess, what, ": ", call, " failed: ", api.getErrorString(st), " (cuDNN status ", st, ")");
  ConvSearchResult r;
  r.timed = n < 0 ? 0 : n > kMaxResults ? kMaxResults : n;
  // Results come sorted by time, fastest first: the first we accept wins.
  for (int i = 0; i < r.timed; i++) {
    const dnn9::AlgoPerf& c = perf[i];
    if (c.status != dnn9::kSuccess || (f32 && c.mathType != dnn9::kFmaMath)) continue;
    if (deterministicOnly && c.determinism != dnn9::kDeterministic) continue;
    if (c.memory > p.workspaceBound) continue;
    if (api.setConvMathType(p.conv, c.mathType) != dnn9::kSuccess) continue;
    size_t bytes = 0;
    const int ws2 = p.prop == kConvForward ? api.fwdWorkspace(p.handle, p.a, p.w, p.conv, p.b, c.algo, &bytes)
                    : p.prop == kConvBackwardData
                        ? api.bwdDataWorkspace(p.handle, p.w, p.a, p.conv, p.b, c.algo, &bytes)
                        : api.bwdFilterWorkspace(p.handle, p.a, p.b, p.conv, p.w, c.algo, &bytes);
    if (ws2 != dnn9::kSuccess) continue;
    r.algo = c.algo;
    r.mathType = c.mathType;
    // What the algorithm reported needing, or what the size query says if that is more.
    r.workspace = bytes > c.memory ? bytes : c.memory;
    break;
  }
  return r;
}

}  // namespace mt
#endif
