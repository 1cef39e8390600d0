// The functions meshtrain uses from cuBLASLt and NCCL, resolved with dlopen on first use. Only
// these are declared (with the values of the vendors' headers), so no vendor header or library
// is needed to build. Compiled in every build: the CPU build reports them as not loaded.
#pragma once
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>

namespace mt {

// cuBLASLt (cublasLt.h). Handles are opaque; enums are int.
namespace lt {
using Handle = void*;
using MatmulDesc = void*;
using Layout = void*;
using Preference = void*;
struct Algo {
  uint64_t data[8];
};
struct HeuristicResult {
  Algo algo;
  size_t workspaceSize;
  int state;
  float wavesCount;
  int reserved[4];
};
constexpr int kSuccess = 0;
constexpr int kOpN = 0, kOpT = 1;
constexpr int kDescComputeType = 0, kDescScaleType = 1, kDescTransA = 3, kDescTransB = 4;
constexpr int kDescEpilogue = 7, kDescBiasPointer = 8, kDescBiasDataType = 26;
constexpr int kDescEpilogueAuxPointer = 11, kDescEpilogueAuxLd = 12;
constexpr uint32_t kEpilogueDefault = 1, kEpilogueBias = 4, kEpilogueBgradB = 512;  // cublasLtEpilogue_t
// GELU (the tanh form) after the product (+ bias); the _AUX forms also write its input (the pre-activation).
constexpr uint32_t kEpilogueGelu = 32, kEpilogueGeluBias = 36, kEpilogueGeluAux = 160, kEpilogueGeluAuxBias = 164;
constexpr uint32_t kEpilogueDGelu = 192;  // GELU's backward: the product times gelu'(aux)
constexpr int kLayoutOrder = 1, kLayoutBatchCount = 5, kLayoutStridedBatchOffset = 6;
constexpr int kOrderRow = 1;
constexpr int kPrefMaxWorkspaceBytes = 1, kPrefReductionSchemeMask = 3, kPrefMinAlignA = 5, kPrefMinAlignB = 6, kPrefMinAlignC = 7,
              kPrefMinAlignD = 8;
constexpr uint32_t kReductionComputeType = 2;  // cublasLtReductionScheme_t: split-K partials kept in the compute type
constexpr int kCompute32F = 68, kCompute64F = 70;
// cudaDataType_t (library_types.h)
constexpr int kR32F = 0, kR64F = 1, kR16F = 2, kR16BF = 14;
}  // namespace lt

struct CublasLtApi {
  size_t (*getVersion)();
  int (*create)(lt::Handle*);
  int (*matmulDescCreate)(lt::MatmulDesc*, int computeType, int scaleType);
  int (*matmulDescSetAttribute)(lt::MatmulDesc, int attr, const void* buf, size_t size);
  int (*matmulDescDestroy)(lt::MatmulDesc);
  int (*layoutCreate)(lt::Layout*, int type, uint64_t rows, uint64_t cols, int64_t ld);
  int (*layoutSetAttribute)(lt::Layout, int attr, const void* buf, size_t size);
  int (*layoutDestroy)(lt::Layout);
  int (*preferenceCreate)(lt::Preference*);
  int (*preferenceSetAttribute)(lt::Preference, int attr, const void* buf, size_t size);
  int (*preferenceDestroy)(lt::Preference);
  int (*algoGetHeuristic)(lt::Handle, lt::MatmulDesc, lt::Layout a, lt::Layout b, lt::Layout c, lt::Layout d,
                          lt::Preference, int requested, lt::HeuristicResult* results, int* returned);
  int (*matmul)(lt::Handle, lt::MatmulDesc, const void* alpha, const void* a, lt::Layout, const void* b, lt::Layout,
                const void* beta, const void* c, lt::Layout, void* d, lt::Layout, const lt::Algo* algo, void* workspace,
                size_t workspaceBytes, void* stream);
};

// NCCL (nccl.h): what the report and the communicator (nccl_comm.cc) call. Enums are int;
// ncclComm_t is opaque; cudaStream_t is passed as void* (no CUDA header here).
namespace nc {
using Comm = void*;
struct UniqueId {
  char internal[128];  // NCCL_UNIQUE_ID_BYTES
};
constexpr int kSuccess = 0, kInProgress = 7;  // ncclResult_t
constexpr int kSum = 0, kProd = 1, kMax = 2, kMin = 3, kAvg = 4;  // ncclRedOp_t (ncclAvg since 2.10)
// ncclDataType_t
constexpr int kInt32 = 2, kInt64 = 4, kFloat16 = 6, kFloat32 = 7, kFloat64 = 8, kBfloat16 = 9;
constexpr int kSplitNoColor = -1;  // NCCL_SPLIT_NOCOLOR
// ncclConfig_t as NCCL 2.18's header lays it out (ncclConfig_v21700 + splitShare). NCCL copies
// min(size, its own sizeof) bytes and resets fields newer than `version` to defaults, so a newer
// libnccl accepts it; 2.14-2.17 read `blocking` only. Unset fields are NCCL_CONFIG_UNDEF_*.
struct Config {
  size_t size = sizeof(Config);
  unsigned int magic = 0xcafebeef;  // NCCL_API_MAGIC
  unsigned int version = 21800;     // NCCL_VERSION(2, 18, 0)
  int blocking = INT_MIN;
  int cgaClusterSize = INT_MIN;
  int minCTAs = INT_MIN;
  int maxCTAs = INT_MIN;
  const char* netName = nullptr;
  int splitShare = INT_MIN;
};
}  // namespace nc

struct NcclApi {
  int (*getVersion)(int* version);
  const char* (*getErrorString)(int result);
  int (*getUniqueId)(nc::UniqueId* id);
  int (*commInitRank)(nc::Comm* comm, int nranks, nc::UniqueId id, int rank);
  // commInitRankConfig and commFinalize (NCCL >= 2.14) and commSplit (>= 2.18) are null when the
  // library lacks them.
  int (*commInitRankConfig)(nc::Comm* comm, int nranks, nc::UniqueId id, int rank, nc::Config* config);
  int (*commSplit)(nc::Comm comm, int color, int key, nc::Comm* newcomm, nc::Config* config);
  int (*commGetAsyncError)(nc::Comm comm, int* asyncError);
  int (*commAbort)(nc::Comm comm);
  int (*commFinalize)(nc::Comm comm);
  int (*commDestroy)(nc::Comm comm);
  int (*allReduce)(const void* send, void* recv, size_t count, int dtype, int op, nc::Comm comm, void* stream);
  int (*reduce)(const void* send, void* recv, size_t count, int dtype, int op, int root, nc::Comm comm, void* stream);
  int (*reduceScatter)(const void* send, void* recv, size_t recvCount, int dtype, int op, nc::Comm comm, void* stream);
  int (*allGather)(const void* send, void* recv, size_t sendCount, int dtype, nc::Comm comm, void* stream);
  int (*broadcast)(const void* send, void* recv, size_t count, int dtype, int root, nc::Comm comm, void* stream);
  int (*send)(const void* buf, size_t count, int dtype, int peer, nc::Comm comm, void* stream);
  int (*recv)(void* buf, size_t count, int dtype, int peer, nc::Comm comm, void* stream);
  int (*groupStart)();
  int (*groupEnd)();
};

// The loaded API, or nullptr with `why` set to a "missing libX ..." message.
const CublasLtApi* cublasLt(std::string* why);
const NcclApi* nccl(std::string* why);

// {found, path, version, error} of each library, for cudaLibraries().
struct LibraryReport {
  std::string name;
  bool found = false;
  std::string path;
  std::string version;
  std::string error;
};
LibraryReport cublasLtReport();
LibraryReport ncclReport();

}  // namespace mt
