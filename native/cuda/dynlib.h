// Finding and opening CUDA's optional libraries (cuBLASLt, NCCL) at run time with dlopen, so the
// addon builds and loads where they are absent. No CUDA headers: compiled in every build.
#pragma once
#include <string>
#include <vector>

namespace mt {

struct DynLib {
  void* handle = nullptr;
  std::string path;   // the file that was opened
  std::string error;  // why nothing was opened, naming the library and the places searched
};

// Directories searched before the loader's default path, in order: MESHTRAIN_CUDA_LIB_PATH
// (colon-separated), then the lib folders of NVIDIA's Python wheels (site-packages/nvidia/*/lib,
// where the GPU machines keep NCCL, cuBLAS and cuDNN), then /usr/local/cuda/lib64.
std::vector<std::string> cudaLibSearchDirs();

// Opens the first of `names` (sonames such as libnccl.so.2) found in cudaLibSearchDirs() or by
// the default dlopen search. `what` names the library in the error ("missing libnccl ...").
DynLib openCudaLib(const char* what, const std::vector<std::string>& names);

// A symbol of an opened library; throws naming the library and the symbol when it is absent.
void* cudaLibSymbol(const DynLib& lib, const char* what, const char* symbol);

}  // namespace mt
