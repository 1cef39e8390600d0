// Batched matmul on CUDA through cuBLASLt (loaded at run time): bf16/f16 on the tensor cores
// with f32 accumulation, f32 (no TF32: the same function as the CPU within f32 rounding), f64.
// Same arguments as the CPU matmul (native/cpu/matmul.cc, the reference). CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include "cuda/matmul.h"

#include <algorithm>
#include <array>
#include <unordered_map>
#include <memory>
#include <mutex>
#include "cuda/census.h"
#include "cuda/kernels.h"
#include "cuda/libraries.h"
#include "cuda/runtime.h"
#include "tensor/storage.h"

namespace mt {
namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

struct DeviceLt {
  lt::Handle handle = nullptr;
  void* workspace = nullptr;
};

std::mutex& ltMutex() {
  static std::mutex m;
  return m;
}

const CublasLtApi& api() {
  std::string why;
  const CublasLtApi* a = cublasLt(&why);
  MT_CHECK(a, "matmul on CUDA needs cuBLASLt: ", why);
  return *a;
}

void ltCheck(int status, const char* what) {
  MT_CHECK(status == lt::kSuccess, "matmul: ", what, " failed with cuBLASLt status ", status);
}

// The handle and workspace of `dev`, made on first use. The workspace is a storage tagged
// 'other' on that device, held for the life of the process.
DeviceLt& deviceLt(int dev) {
  static std::array<DeviceLt, kMaxCudaDevices> all;
  std::lock_guard<std::mutex> lock(ltMutex());
  DeviceLt& d = all[size_t(dev)];
  if (!d.handle) {
    cudaUseDevice(dev);
    ltCheck(api().create(&d.handle), "cublasLtCreate");
    int64_t id = allocStorage(kWorkspaceBytes, Tag::Other, dev + 1, false);
    d.workspace = storageAt(id).ptr;
  }
  return d;
}

// One operand as [batch, rows, cols] with element strides; size-1 dims get the strides of a
// plain layout so that a row or a column counts as either major.
struct Operand {
  int64_t rows, cols, s[3];
  bool rowMajor() const { return s[2] == 1 && s[1] >= std::max<int64_t>(1, cols); }
  bool colMajor() const { return s[1] == 1 && s[2] >= std::max<int64_t>(1, rows); }
};

void canonicalize(Operand& p) {
  if (p.rows == 1 && p.cols == 1) p.s[1] = p.s[2] = 1;
  else if (p.rows == 1) p.s[1] = p.s[2] == 1 ? p.cols : 1;
  else if (p.cols == 1) p.s[2] = p.s[1] == 1 ? p.rows : 1;
}

int ltType(DType d) {
  switch (d) {
    case DType::F32: return lt::kR32F;
    case DType::F64: return lt::kR64F;
    case DType::BF16: return lt::kR16BF;
    case DType::F16: return lt::kR16F;
    default: throw Error("matmul: integer dtypes are not supported on CUDA");
  }
}

// The descriptors and the chosen algorithm of one problem shape, made once: creating them and
// asking the heuristic costs tens of microseconds, as much as a small product.
struct Plan {
  const CublasLtApi* a = nullptr;
  lt::MatmulDesc op = nullptr;
  lt::Layout la = nullptr, lb = nullptr, lc = nullptr;
  lt::Preference pref = nullptr;
  lt::Algo algo{};
  bool unsupported = false;  // cuBLASLt has no algorithm for the epilogue asked for
  ~Plan() {
    if (!a) return;
    if (pref) a->preferenceDestroy(pref);
    if (lc) a->layoutDestroy(lc);
    if (lb) a->layoutDestroy(lb);
    if (la) a->layoutDestroy(la);
    if (op) a->matmulDescDestroy(op);
  }
};

// dev, dtypes, batch, M, N, K, ops, leading dims, batch strides, alignments (A, B, D, C), epilogue, its vectors'
// alignment, out's ld.
using PlanKey = std::array<int64_t, 20>;
constexpr size_t kMaxPlans = 4096;

// One key compared per product (a tree compared keys lexicographically at every level).
struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the values
    for (int64_t v : k) h = (h ^ uint64_t(v)) * 1099511628211ull;
    return size_t(h);
  }
};

// The cached plan for `key`, built by `build` on a miss (a failed build is not cached).
template <typename F>
const Plan& planFor(const PlanKey& key, F&& build) {
  static std::mutex mu;
  static std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash> plans;
  std::lock_guard<std::mutex> lock(mu);
  auto it = plans.find(key);
  if (it != plans.end()) return *it->second;
  if (plans.size() >= kMaxPlans) plans.clear();  // shapes churn (e.g. variable sequence lengths)
  auto plan = std::make_unique<Plan>();
  plan->a = &api();
  build(*plan);
  return *plans.emplace(key, std::move(plan)).first->second;
}

void batchLayout(const CublasLtApi& a, lt::Layout l, int64_t batch, int64_t stride) {
  if (batch <= 1) return;
  int32_t count = int32_t(batch);
  ltCheck(a.layoutSetAttribute(l, lt::kLayoutBatchCount, &count, sizeof(count)), "setting the batch count");
  ltCheck(a.layoutSetAttribute(l, lt::kLayoutStridedBatchOffset, &stride, sizeof(stride)), "setting the batch stride");
}

// The largest power of two (at most 256) that divides the address (null: 256).
uint32_t alignmentOf(const void* p) {
  const uint64_t a = uint64_t(reinterpret_cast<uintptr_t>(p));
  return a == 0 || __builtin_ctzll(a) >= 8 ? 256u : uint32_t(1) << __builtin_ctzll(a);
}

}  // namespace

bool cudaMatmul(int dev, DType d, const void* aPtr, const int64_t* as, const void* bPtr, const int64_t* bs,
                DType od, void* out, int64_t batch, int64_t M, int64_t N, int64_t K, bool accumulate,
                const std::function<void*(int64_t bytes)>& scratch, const MatmulEpilogue& ep, int64_t ldOut) {
  const int64_t ldc = ldOut > 0 ? ldOut : N;
  MT_CHECK(ldc >= N, "matmul: output row pitch ", ldc, " is below its ", N, " columns");
  MT_CHECK(!(ep.bias && ep.biasGradA), "matmul: a bias and a bias gradient in one product");
  MT_CHECK(!ep.biasGradA || batch == 1, "matmul: a bias gradient needs batch 1, got ", batch);
  MT_CHECK(!ep.geluAux || ep.gelu, "matmul: a GELU input buffer without the GELU epilogue");
  MT_CHECK(!ep.gelu || (batch == 1 && !ep.biasGradA && !accumulate), "matmul: the GELU epilogue needs batch 1, no bias ",
           "gradient and no accumulation (got batch ", batch, ")");
  MT_CHECK(!ep.geluGradAux || (batch == 1 && !accumulate && !ep.gelu && !ep.bias && !ep.biasGradA && !ep.addend),
           "matmul: GELU's backward epilogue needs batch 1 and nothing else beside it (got batch ", batch, ")");
  MT_CHECK(!ep.addend || (!accumulate && !ep.gelu && !ep.biasGradA), "matmul: an addend with accumulation, GELU or a bias ",
           "gradient (it is C with beta = 1: out = product + bias + addend)");
  // Vectors the vectorized epilogues may load 16 bytes at a time; a view elsewhere goes the other way.
  if ((ep.bias && alignmentOf(ep.bias) < 16) || (ep.biasGradA && alignmentOf(ep.biasGradA) < 16)) return false;
  // The GELU input matrix's leading dimension (N, out's row length) must be a multiple of 8.
  if (ep.gelu && (N % 8 != 0 || (ep.geluAux && alignmentOf(ep.geluAux) < 16))) return false;
  if (ep.geluGradAux && (N % 8 != 0 || alignmentOf(ep.geluGradAux) < 16)) return false;
  // The aux matrix: written by GELU_AUX (forward), read by DGELU (backward).
  const void* aux = ep.geluGradAux ? ep.geluGradAux : ep.geluAux;
  const uint32_t epilogue = ep.gelu ? (ep.geluAux ? (ep.bias ? lt::kEpilogueGeluAuxBias : lt::kEpilogueGeluAux)
                                                  : (ep.bias ? lt::kEpilogueGeluBias : lt::kEpilogueGelu))
                            : ep.geluGradAux ? lt::kEpilogueDGelu
                            : ep.bias      ? lt::kEpilogueBias
                            : ep.biasGradA ? lt::kEpilogueBgradB
                                           : lt::kEpilogueDefault;
  Operand A{M, K, {as[0], as[1], as[2]}}, B{K, N, {bs[0], bs[1], bs[2]}};
  canonicalize(A);
  canonicalize(B);
  const size_t item = itemsize(d);
  // B shared by the batch and A's matrices stacked row-major: one [batch*M, K] product.
  if (batch > 1 && B.s[0] == 0 && A.rowMajor() && A.s[0] == M * A.s[1]) {
    A.rows = M * batch;
    M *= batch;
    batch = 1;
  }
  // Layouts cuBLASLt cannot take (strides on both dims, a broadcast batch) are packed row-major.
  auto pack = [&](Operand& p, const void*& ptr) {
    if ((p.rowMajor() || p.colMajor()) && (batch == 1 || p.s[0] != 0)) return;
    void* dst = scratch(batch * p.rows * p.cols * int64_t(item));
    // The copy's launch is counted in copy.cu; this note says a matmul asked for it.
    MT_CENSUS_CALL("note", "matmul packs an operand", 2 * batch * p.rows * p.cols * int64_t(item));
    int64_t shape[3] = {batch, p.rows, p.cols}, dstStrides[3] = {p.rows * p.cols, p.cols, 1};
    cudaCopyStrided(dev, int(d), ptr, p.s, int(d), dst, dstStrides, shape, 3);
    ptr = dst;
    p.s[0] = dstStrides[0], p.s[1] = dstStrides[1], p.s[2] = dstStrides[2];
  };
  pack(A, aPtr);
  pack(B, bPtr);

  const CublasLtApi& a = api();
  DeviceLt& h = deviceLt(dev);
  cudaUseDevice(dev);
  const bool f64 = d == DType::F64;
  // Column-major view: out^T [N, M] = B^T [N, K] x A^T [K, M]; row-major X with leading dim L is
  // column-major X^T with the same L (no transpose), column-major X needs a transpose.
  const int opA = B.rowMajor() ? lt::kOpN : lt::kOpT, opB = A.rowMajor() ? lt::kOpN : lt::kOpT;
  const int64_t ldB = B.rowMajor() ? B.s[1] : B.s[2], ldA = A.rowMajor() ? A.s[1] : A.s[2];
  // The heuristic assumes 256-byte aligned operands unless told: views start anywhere.
  const uint32_t alignA = alignmentOf(bPtr), alignB = alignmentOf(aPtr), alignD = alignmentOf(out);
  // C is out itself (accumulating, or unread with beta 0) or the addend.
  const void* cPtr = ep.addend ? ep.addend : out;
  const uint32_t alignC = alignmentOf(cPtr);
  // The heuristic reads the epilogue's pointers for their alignment: a plan serves pointers of those alignments only.
  const void* vec = ep.bias ? ep.bias : ep.biasGradA;
  const int64_t alignVec = (vec ? alignmentOf(vec) : 0) * 512 + (aux ? alignmentOf(aux) : 0);
  const PlanKey key{dev,  int64_t(d), int64_t(od), batch,  M,      N,        K,        opA, opB, ldB,
                    ldA,  B.s[0],     A.s[0],      alignA, alignB, alignD, alignC, epilogue, alignVec, ldc};
  const Plan& x = planFor(key, [&](Plan& x) {
    const int compute = f64 ? lt::kCompute64F : lt::kCompute32F, scaleType = f64 ? lt::kR64F : lt::kR32F;
    ltCheck(a.matmulDescCreate(&x.op, compute, scaleType), "creating the matmul descriptor");
    ltCheck(a.matmulDescSetAttribute(x.op, lt::kDescTransA, &opA, sizeof(opA)), "setting transA");
    ltCheck(a.matmulDescSetAttribute(x.op, lt::kDescTransB, &opB, sizeof(opB)), "setting transB");
    const int t = ltType(d), ot = ltType(od);
    if (epilogue != lt::kEpilogueDefault) {
      ltCheck(a.matmulDescSetAttribute(x.op, lt::kDescEpilogue, &epilogue, sizeof(epilogue)), "setting the epilogue");
    }
    if (ep.bias || ep.biasGradA) {
      const int32_t biasType = ot;  // the documented default, said explicitly
      ltCheck(a.matmulDescSetAttribute(x.op, lt::kDescBiasDataType, &biasType, sizeof(biasType)), "setting the bias dtype");
      // The heuristic sees a real (16-byte aligned) vector, as every later call of this plan has.
      const void* vec = ep.bias ? ep.bias : ep.biasGradA;
      ltCheck(a.matmulDescSetAttribute(x.op, lt::kDescBiasPointer, &vec, sizeof(vec)), "setting the bias pointer");
    }
    if (aux) {
      // Column-major, the aux matrix is out^T [N, M]: leading dimension N. Its type is D's (the default).
      const int64_t auxLd = N;
      ltCheck(a.matmulDescSetAttribute(x.op, lt::kDescEpilogueAuxLd, &auxLd, sizeof(auxLd)), "setting the GELU input's ld");
      ltCheck(a.matmulDescSetAttribute(x.op, lt::kDescEpilogueAuxPointer, &aux, sizeof(aux)), "setting the GELU input pointer");
    }
    if (opA == lt::kOpN) ltCheck(a.layoutCreate(&x.la, t, uint64_t(N), uint64_t(K), ldB), "layout of B");
    else ltCheck(a.layoutCreate(&x.la, t, uint64_t(K), uint64_t(N), ldB), "layout of B");
    if (opB == lt::kOpN) ltCheck(a.layoutCreate(&x.lb, t, uint64_t(K), uint64_t(M), ldA), "layout of A");
    else ltCheck(a.layoutCreate(&x.lb, t, uint64_t(M), uint64_t(K), ldA), "layout of A");
    ltCheck(a.layoutCreate(&x.lc, ot, uint64_t(N), uint64_t(M), ldc), "layout of out");
    batchLayout(a, x.la, batch, B.s[0]);
    batchLayout(a, x.lb, batch, A.s[0]);
    batchLayout(a, x.lc, batch, M * ldc);
    ltCheck(a.preferenceCreate(&x.pref), "creating the preference");
    uint64_t ws = kWorkspaceBytes;
    ltCheck(a.preferenceSetAttribute(x.pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof(ws)), "setting the workspace size");
    // Split-K partials summed in the compute type (f32 for bf16/f16) only: the in-place and
    // output-type schemes add them in the output's dtype (extra f16/bf16 roundings), in-place also
    // in an order that changes from run to run.
    const uint32_t reductions = lt::kReductionComputeType;
    ltCheck(a.preferenceSetAttribute(x.pref, lt::kPrefReductionSchemeMask, &reductions, sizeof(reductions)),
            "setting the split-K reduction schemes");
    ltCheck(a.preferenceSetAttribute(x.pref, lt::kPrefMinAlignA, &alignA, sizeof(alignA)), "setting A's alignment");
    ltCheck(a.preferenceSetAttribute(x.pref, lt::kPrefMinAlignB, &alignB, sizeof(alignB)), "setting B's alignment");
    ltCheck(a.preferenceSetAttribute(x.pref, lt::kPrefMinAlignC, &alignC, sizeof(alignC)), "setting C's alignment");
    ltCheck(a.preferenceSetAttribute(x.pref, lt::kPrefMinAlignD, &alignD, sizeof(alignD)), "setting D's alignment");
    lt::HeuristicResult best{};
    int found = 0;
    const int status = a.algoGetHeuristic(h.handle, x.op, x.la, x.lb, x.lc, x.lc, x.pref, 1, &best, &found);
    // An epilogue some (dtype, shape) has no kernel for is answered NOT_SUPPORTED or with no algorithm.
    if (epilogue != lt::kEpilogueDefault && (status != lt::kSuccess || found == 0)) {
      x.unsupported = true;
      return;
    }
    ltCheck(status, "choosing an algorithm");
    MT_CHECK(found > 0, "matmul: cuBLASLt has no algorithm for ", dtypeNameOf(d), " -> ", dtypeNameOf(od), " [", batch,
             " x ", M, " x ", K, "] @ [", K, " x ", N, "]");
    x.algo = best.algo;
  });
  if (x.unsupported) return false;
  if (ep.bias || ep.biasGradA) {
    // The vector's address is per call; the cached descriptor is only used on this thread, under the JS lock.
    const void* vec = ep.bias ? ep.bias : ep.biasGradA;
    ltCheck(a.matmulDescSetAttribute(x.op, lt::kDescBiasPointer, &vec, sizeof(vec)), "setting the bias pointer");
  }
  if (aux) ltCheck(a.matmulDescSetAttribute(x.op, lt::kDescEpilogueAuxPointer, &aux, sizeof(aux)), "setting the GELU input pointer");
  const bool addC = accumulate || ep.addend;
  const double alpha64 = 1, beta64 = addC ? 1 : 0;
  const float alpha32 = 1, beta32 = addC ? 1 : 0;
  const void* alpha = f64 ? static_cast<const void*>(&alpha64) : static_cast<const void*>(&alpha32);
  const void* beta = f64 ? static_cast<const void*>(&beta64) : static_cast<const void*>(&beta32);
  const char* epName = ep.gelu ? (ep.geluAux ? (ep.bias ? " gelu_aux_bias" : " gelu_aux") : (ep.bias ? " gelu_bias" : " gelu"))
                       : ep.geluGradAux ? " dgelu"
                       : ep.bias    ? " bias"
                       : ep.biasGradA ? " bgrad"
                                      : "";
  MT_CENSUS_CALL("library", std::string("cublasLtMatmul ") + dtypeNameOf(d) + (accumulate ? " accumulate" : "") +
                     (ep.addend ? " addend" : "") + epName,
                 double(item) * double(batch) * double(M * K + K * N) +
                     double(itemsize(od)) * double(batch * M * N) * (addC ? 2 : 1) +
                     double(itemsize(od)) * double(ep.bias ? N : ep.biasGradA ? M : 0) +
                     double(itemsize(od)) * double(aux ? M * N : 0));
  ltCheck(a.matmul(h.handle, x.op, alpha, bPtr, x.la, aPtr, x.lb, beta, cPtr, x.lc, out, x.lc, &x.algo, h.workspace,
                   kWorkspaceBytes, computeStream(dev)),
          "cublasLtMatmul");
  MT_CENSUS_DONE(computeStream(dev));
  return true;
}

const char* dtypeNameOf(DType d) {
  switch (d) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
  }
  return "?";
}

}  // namespace mt
#endif
