// A small builder over cuDNN's graph (backend) API: tensors, pointwise, matmul, reduction and
// reshape operations, then the operation graph, engine heuristics (mode A), engine configs and the
// first execution plan that finalizes. Every call's status is checked; a failure throws
// CudnnGraphError naming the call, the descriptor and cuDNN's message. Descriptors of a built plan
// are kept for the process (plans are cached); those of a failed build are destroyed.
#pragma once
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>
#include "cuda/cudnn_api.h"
#include "cuda/cudnn_graph.h"

namespace mt {

struct CudnnGraphError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Dims4 = std::array<int64_t, 4>;

// A finalized tensor descriptor and what it says.
struct GTensor {
  void* desc = nullptr;
  int64_t uid = 0;
  int type = 0;
  Dims4 dims{}, strides{};
};

struct CudnnPlan {
  void* plan = nullptr;
  int64_t workspace = 0;
};

class CudnnGraphBuilder {
 public:
  explicit CudnnGraphBuilder(const CudnnApi& api) : api_(api) {}
  ~CudnnGraphBuilder();
  CudnnGraphBuilder(const CudnnGraphBuilder&) = delete;
  CudnnGraphBuilder& operator=(const CudnnGraphBuilder&) = delete;

  // A tensor with the next uid (1, 2, ...: the caller's variant pack follows creation order).
  GTensor tensor(int type, const Dims4& dims, const Dims4& strides, bool isVirtual, bool byValue = false);
  // A virtual tensor, dense in dims' order.
  GTensor virt(int type, const Dims4& dims);
  // A by-value f32 scalar, [1, 1, 1, 1] as cudnn-frontend expands fused scalars.
  GTensor scalar() { return tensor(dnn9g::kFloat, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true); }

  // y = mode(x[, b[, t]]) computed in mathPrec; axis for GEN_INDEX.
  void pointwise(int mode, const GTensor& x, const GTensor* b, const GTensor* t, const GTensor& y,
                 int mathPrec = dnn9g::kFloat, int64_t axis = -1);
  void matmul(const GTensor& a, const GTensor& b, const GTensor& c);
  void reduction(int op, const GTensor& x, const GTensor& y);
  void reshape(const GTensor& x, const GTensor& y);

  // The operation graph of every operation so far, on `handle`, and its first plan that finalizes.
  CudnnPlan build(dnn9::Handle handle);

 private:
  void* create(int type, const char* what);
  void set(void* d, int name, int type, int64_t count, const void* v, const char* what);
  void finalize(void* d, const char* what);
  void check(int status, const std::string& call);
  void* op(int type, const char* what, std::initializer_list<std::pair<int, void*>> descs);

  const CudnnApi& api_;
  std::vector<void*> owned_, ops_;
  int64_t nextUid_ = 1;
  bool keep_ = false;
};

}  // namespace mt
