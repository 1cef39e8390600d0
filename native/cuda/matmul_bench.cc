// The benchmark's peer: cuBLASLt called directly on row-major [M, K] x [K, N] buffers, with the
// descriptors and algorithm chosen once outside the timed region and CUDA events around `iters`
// back-to-back products, rotating over several operand pairs so small sizes are not timed out of
// L2. What bench/gpu.ts compares meshtrain's matmul to. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <algorithm>
#include <vector>
#include "cuda/libraries.h"
#include "cuda/host_sync.h"
#include "cuda/runtime.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

void check(int status, const char* what) { MT_CHECK(status == lt::kSuccess, "benchCublasLtMatmul: ", what, " failed: ", status); }

// A storage id or an array of them (argument i).
std::vector<int64_t> idList(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() > i && info[i].IsArray()) return argInts(info, i);
  return {argInt(info, i)};
}

// benchCublasLtMatmul(dtypeCode, aIds, bIds, outId, M, N, K, iters, rounds) -> median seconds per
// product over `rounds` timed groups of `iters`; product i reads aIds[i % n], bIds[i % n] (ids or
// equal-length arrays of ids). Operands are existing CUDA storages (random values, made by the
// caller), bf16/f16 in and out with f32 accumulation, or f32 (no TF32).
Napi::Value BenchCublasLtMatmul(const Napi::CallbackInfo& info) {
  DType d = toDType(int(argInt(info, 0)));
  const std::vector<int64_t> aIds = idList(info, 1), bIds = idList(info, 2);
  int64_t oId = argInt(info, 3), M = argInt(info, 4), N = argInt(info, 5), K = argInt(info, 6), iters = argInt(info, 7),
          rounds = argInt(info, 8);
  MT_CHECK(d == DType::F32 || d == DType::BF16 || d == DType::F16, "benchCublasLtMatmul: f32, bf16 or f16");
  MT_CHECK(iters >= 1 && rounds >= 1, "benchCublasLtMatmul: iters and rounds must be >= 1");
  MT_CHECK(M >= 1 && N >= 1 && K >= 1, "benchCublasLtMatmul: M, N, K must be >= 1, got ", M, ", ", N, ", ", K);
  MT_CHECK(!aIds.empty() && aIds.size() == bIds.size(), "benchCublasLtMatmul: ", aIds.size(), " a operands and ",
           bIds.size(), " b operands (need equal, non-zero counts)");
  std::string why;
  const CublasLtApi* a = cublasLt(&why);
  MT_CHECK(a, "benchCublasLtMatmul: ", why);
  int code = storageAt(oId).device;
  MT_CHECK(isCudaCode(code), "benchCublasLtMatmul: the output must be on a CUDA device");
  const int dev = code - 1;
  const size_t item = itemsize(d);
  std::vector<const void*> As, Bs;
  for (size_t i = 0; i < aIds.size(); i++) {
    As.push_back(cudaDataPtr<uint8_t>(aIds[i], 0, M * K * int64_t(item)));
    Bs.push_back(cudaDataPtr<uint8_t>(bIds[i], 0, K * N * int64_t(item)));
    MT_CHECK(storageAt(aIds[i]).device == code && storageAt(bIds[i]).device == code,
             "benchCublasLtMatmul: operands must be on the output's device cuda:", code - 1);
  }
  void* D = cudaDataPtr<uint8_t>(oId, 0, M * N * int64_t(item));
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const int t = d == DType::F32 ? lt::kR32F : d == DType::BF16 ? lt::kR16BF : lt::kR16F;
  lt::Handle h = nullptr;
  check(a->create(&h), "cublasLtCreate");
  lt::MatmulDesc op = nullptr;
  lt::Layout la = nullptr, lb = nullptr, lc = nullptr;
  lt::Preference pref = nullptr;
  int64_t wsId = allocStorage(size_t(32) << 20, Tag::Other, code, false);
  std::vector<float> times;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  try {
    check(a->matmulDescCreate(&op, lt::kCompute32F, lt::kR32F), "descriptor");
    int opN = lt::kOpN;
    check(a->matmulDescSetAttribute(op, lt::kDescTransA, &opN, sizeof(opN)), "transA");
    check(a->matmulDescSetAttribute(op, lt::kDescTransB, &opN, sizeof(opN)), "transB");
    // Row-major out = A B is column-major out^T = B^T A^T.
    check(a->layoutCreate(&la, t, uint64_t(N), uint64_t(K), N), "layout B");
    check(a->layoutCreate(&lb, t, uint64_t(K), uint64_t(M), K), "layout A");
    check(a->layoutCreate(&lc, t, uint64_t(N), uint64_t(M), N), "layout out");
    check(a->preferenceCreate(&pref), "preference");
    uint64_t ws = uint64_t(32) << 20;
    check(a->preferenceSetAttribute(pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof(ws)), "workspace");
    lt::HeuristicResult best{};
    int found = 0;
    check(a->algoGetHeuristic(h, op, la, lb, lc, lc, pref, 1, &best, &found), "heuristic");
    MT_CHECK(found > 0, "benchCublasLtMatmul: no algorithm");
    const float one = 1, zero = 0;
    void* wsPtr = storageAt(wsId).ptr;
    size_t next = 0;
    auto run = [&] {
      const size_t i = next++ % As.size();
      check(a->matmul(h, op, &one, Bs[i], la, As[i], lb, &zero, D, lc, D, lc, &best.algo, wsPtr, ws, s), "cublasLtMatmul");
    };
    for (int i = 0; i < 3; i++) run();  // warm-up
    cudaCheck(cudaEventCreate(&e0), "cudaEventCreate");
    cudaCheck(cudaEventCreate(&e1), "cudaEventCreate");
    for (int64_t r = 0; r < rounds; r++) {
      cudaCheck(cudaEventRecord(e0, s), "cudaEventRecord");
      for (int64_t i = 0; i < iters; i++) run();
      cudaCheck(cudaEventRecord(e1, s), "cudaEventRecord");
      countHostSync(dev);
      cudaCheck(cudaEventSynchronize(e1), "cudaEventSynchronize");
      float ms = 0;
      cudaCheck(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
      times.push_back(ms / 1000.0f / float(iters));
    }
  } catch (...) {
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    freeStorage(wsId);
    throw;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  a->preferenceDestroy(pref);
  a->layoutDestroy(lc);
  a->layoutDestroy(lb);
  a->layoutDestroy(la);
  a->matmulDescDestroy(op);
  freeStorage(wsId);  // handle h is kept: cublasLtDestroy is not among the declared functions
  std::sort(times.begin(), times.end());
  return Napi::Number::New(info.Env(), double(times[times.size() / 2]));
}

}  // namespace

void registerBenchEvents(Napi::Object exports);  // bench_events.cc

void registerCudaBench(Napi::Object exports) {
  MT_EXPORT(exports, "benchCublasLtMatmul", BenchCublasLtMatmul);
  registerBenchEvents(exports);
}

}  // namespace mt
#endif
