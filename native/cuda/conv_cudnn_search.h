// cuDNN's timed algorithm search for one convolution plan (MESHTRAIN_CUDNN_BENCHMARK=1, PyTorch's
// cudnn.benchmark): cudnnFind*AlgorithmEx on the caller's inputs and scratch outputs, the fastest
// algorithm we accept kept. CUDA builds only.
#pragma once
#ifdef MESHTRAIN_CUDA
#include <cstddef>
#include <functional>
#include "cuda/conv.h"
#include "cuda/cudnn_api.h"

namespace mt {

// The environment switches, read when a plan is made (so a process may change them between shapes).
bool cudnnBenchmarkOn();          // MESHTRAIN_CUDNN_BENCHMARK set and not "0"
bool cudnnDeterministicOnly();    // true unless MESHTRAIN_CUDNN_DETERMINISTIC=0

// The descriptors of one plan and the buffers to time on. in0/in1 are the pass's inputs (forward
// x, w; backward-data w, dy; backward-filter x, dy), read only.
struct ConvSearchProblem {
  const CudnnApi* api;
  dnn9::Handle handle;
  CudaConvProp prop;
  dnn9::TensorDesc a, b;  // forward x, y; backward-data dy, dx; backward-filter x, dy
  dnn9::FilterDesc w;
  dnn9::ConvDesc conv;
  const void* in0;
  const void* in1;
  size_t outBytes;        // bytes of the pass's output (y, dx or dw), all dense
  size_t workspaceBound;  // the workspace offered to the search (already capped by the caller)
};

struct ConvSearchResult {
  int algo = -1;
  int mathType = 0;
  size_t workspace = 0;
  int timed = 0;  // results cuDNN returned
};

// Runs the search on the device's compute stream (synchronizing: counted as one host wait) and
// returns the fastest result with status success, FMA math for f32 (no TF32), deterministic when
// `deterministicOnly`; algo -1 when none qualifies. Leaves the descriptor's math type set to the
// winner's. The output goes to a scratch block from `scratch`, never to the caller's tensor.
// Throws naming the Find call on a cuDNN error.
ConvSearchResult searchConvAlgo(int dev, const ConvSearchProblem& p, bool f32, bool deterministicOnly,
                                const std::function<void*(int64_t)>& scratch, const char* what);

}  // namespace mt
#endif
