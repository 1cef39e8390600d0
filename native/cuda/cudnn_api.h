// The cuDNN functions meshtrain calls (the legacy convolution API, still exported by cuDNN 9's
// libcudnn.so.9, and the graph API's six backend calls that attention_cudnn.cc uses), resolved
// with dlopen on first use. Only these are declared, with the values of
// cudnn_graph.h / cudnn_cnn.h, so no cuDNN header or library is needed to build. Compiled in
// every build: the CPU build reports cuDNN as not loaded.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include "cuda/libraries.h"

namespace mt {

namespace dnn9 {
using Handle = void*;
using TensorDesc = void*;
using FilterDesc = void*;
using ConvDesc = void*;
constexpr int kSuccess = 0;
// cudnnDataType_t
constexpr int kFloat = 0, kDouble = 1, kHalf = 2, kBfloat16 = 9;
// cudnnTensorFormat_t (filters: NCHW is our [O, C, kh, kw] contiguous, NHWC is [O, kh, kw, C])
constexpr int kFormatNCHW = 0, kFormatNHWC = 1;
// cudnnConvolutionMode_t: meshtrain's conv2d is a cross-correlation, as PyTorch's
constexpr int kCrossCorrelation = 1;
// cudnnMathType_t
constexpr int kDefaultMath = 0, kTensorOpMath = 1, kFmaMath = 3;
// cudnnDeterminism_t
constexpr int kDeterministic = 1;

// cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t share this layout.
struct AlgoPerf {
  int algo;
  int status;
  float time;
  size_t memory;
  int determinism;
  int mathType;
  int reserved[3];
};
}  // namespace dnn9

struct CudnnApi {
  size_t (*getVersion)();
  const char* (*getErrorString)(int status);
  int (*create)(dnn9::Handle*);
  int (*setStream)(dnn9::Handle, void* stream);
  int (*createTensorDesc)(dnn9::TensorDesc*);
  int (*setTensorNd)(dnn9::TensorDesc, int dataType, int nbDims, const int* dims, const int* strides);
  int (*destroyTensorDesc)(dnn9::TensorDesc);
  int (*createFilterDesc)(dnn9::FilterDesc*);
  int (*setFilterNd)(dnn9::FilterDesc, int dataType, int format, int nbDims, const int* dims);
  int (*destroyFilterDesc)(dnn9::FilterDesc);
  int (*createConvDesc)(dnn9::ConvDesc*);
  int (*setConvNd)(dnn9::ConvDesc, int arrayLength, const int* pad, const int* stride, const int* dilation, int mode,
                   int computeType);
  int (*setConvGroupCount)(dnn9::ConvDesc, int groups);
  int (*setConvMathType)(dnn9::ConvDesc, int mathType);
  int (*destroyConvDesc)(dnn9::ConvDesc);
  int (*fwdAlgoV7)(dnn9::Handle, dnn9::TensorDesc x, dnn9::FilterDesc w, dnn9::ConvDesc, dnn9::TensorDesc y,
                   int requested, int* returned, dnn9::AlgoPerf* perf);
  int (*bwdDataAlgoV7)(dnn9::Handle, dnn9::FilterDesc w, dnn9::TensorDesc dy, dnn9::ConvDesc, dnn9::TensorDesc dx,
                       int requested, int* returned, dnn9::AlgoPerf* perf);
  int (*bwdFilterAlgoV7)(dnn9::Handle, dnn9::TensorDesc x, dnn9::TensorDesc dy, dnn9::ConvDesc, dnn9::FilterDesc dw,
                         int requested, int* returned, dnn9::AlgoPerf* perf);
  int (*fwdWorkspace)(dnn9::Handle, dnn9::TensorDesc x, dnn9::FilterDesc w, dnn9::ConvDesc, dnn9::TensorDesc y,
                      int algo, size_t* bytes);
  int (*bwdDataWorkspace)(dnn9::Handle, dnn9::FilterDesc w, dnn9::TensorDesc dy, dnn9::ConvDesc, dnn9::TensorDesc dx,
                          int algo, size_t* bytes);
  int (*bwdFilterWorkspace)(dnn9::Handle, dnn9::TensorDesc x, dnn9::TensorDesc dy, dnn9::ConvDesc,
                            dnn9::FilterDesc dw, int algo, size_t* bytes);
  // cudnnFind*AlgorithmEx: times each algorithm on these buffers (synchronizing), results by time;
  // the output argument (y, dx, dw) is overwritten, so callers pass scratch there.
  int (*findFwd)(dnn9::Handle, dnn9::TensorDesc x, const void* xp, dnn9::FilterDesc w, const void* wp, dnn9::ConvDesc,
                 dnn9::TensorDesc y, void* yp, int requested, int* returned, dnn9::AlgoPerf* perf, void* ws,
                 size_t wsBytes);
  int (*findBwdData)(dnn9::Handle, dnn9::FilterDesc w, const void* wp, dnn9::TensorDesc dy, const void* dyp,
                     dnn9::ConvDesc, dnn9::TensorDesc dx, void* dxp, int requested, int* returned,
                     dnn9::AlgoPerf* perf, void* ws, size_t wsBytes);
  int (*findBwdFilter)(dnn9::Handle, dnn9::TensorDesc x, const void* xp, dnn9::TensorDesc dy, const void* dyp,
                       dnn9::ConvDesc, dnn9::FilterDesc dw, void* dwp, int requested, int* returned,
                       dnn9::AlgoPerf* perf, void* ws, size_t wsBytes);
  int (*forward)(dnn9::Handle, const void* alpha, dnn9::TensorDesc x, const void* xp, dnn9::FilterDesc w,
                 const void* wp, dnn9::ConvDesc, int algo, void* ws, size_t wsBytes, const void* beta,
                 dnn9::TensorDesc y, void* yp);
  int (*backwardData)(dnn9::Handle, const void* alpha, dnn9::FilterDesc w, const void* wp, dnn9::TensorDesc dy,
                      const void* dyp, dnn9::ConvDesc, int algo, void* ws, size_t wsBytes, const void* beta,
                      dnn9::TensorDesc dx, void* dxp);
  int (*backwardFilter)(dnn9::Handle, const void* alpha, dnn9::TensorDesc x, const void* xp, dnn9::TensorDesc dy,
                        const void* dyp, dnn9::ConvDesc, int algo, void* ws, size_t wsBytes, const void* beta,
                        dnn9::FilterDesc dw, void* dwp);
  // The graph (backend) API; enum values in cuda/cudnn_graph.h.
  int (*backendCreate)(int descType, void** desc);
  int (*backendDestroy)(void* desc);
  int (*backendSetAttribute)(void* desc, int name, int type, int64_t count, const void* elements);
  int (*backendGetAttribute)(void* desc, int name, int type, int64_t requested, int64_t* count, void* elements);
  int (*backendFinalize)(void* desc);
  int (*backendExecute)(dnn9::Handle, void* plan, void* variantPack);
};

// The loaded API, or nullptr with `why` set to a "missing libcudnn ..." message.
const CudnnApi* cudnn(std::string* why);
// {found, path, version} for cudaLibraries(); version is major.minor.patch from cudnnGetVersion.
LibraryReport cudnnReport();

}  // namespace mt
