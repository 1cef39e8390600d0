// N-API of the host-cost microbenchmark (bench/gpu_host_ops.ts), `native.cuda.hostBench`:
//   noop()                                  the cheapest N-API call (JS loops time it)
//   loop(dev, name, n) -> seconds           n runtime calls in a C++ loop (host_bench.h)
//   cublasLtLoop(dtype, aId, bId, outId, M, N, K, n) -> seconds
//                                           n cublasLtMatmul calls, descriptors and algorithm made first
// Every figure is host time (steady clock) with the stream idle at the start. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <chrono>
#include "cuda/device_memory.h"
#include "cuda/host_bench.h"
#include "cuda/host_sync.h"
#include "cuda/libraries.h"
#include "cuda/runtime.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

Napi::Value Noop(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }

Napi::Value Loop(const Napi::CallbackInfo& info) {
  const int64_t dev = argInt(info, 0), n = argInt(info, 2);
  MT_CHECK(info.Length() > 1 && info[1].IsString(), "hostBench.loop: argument 1 must be the loop's name");
  MT_CHECK(dev >= 0 && dev < cudaDeviceCountCached(), "hostBench.loop: no device cuda:", dev);
  const HostLoop loop = hostLoopByName(info[1].As<Napi::String>().Utf8Value());
  return Napi::Number::New(info.Env(), cudaHostLoop(int(dev), loop, n));
}

void ltCheck(int status, const char* what) { MT_CHECK(status == lt::kSuccess, "hostBench.cublasLtLoop: ", what, " failed: ", status); }

// The descriptors of one row-major [M, K] x [K, N] product (column-major out^T = B^T A^T), freed with it.
struct LtProblem {
  const CublasLtApi* a;
  lt::MatmulDesc op = nullptr;
  lt::Layout la = nullptr, lb = nullptr, lc = nullptr;
  lt::Preference pref = nullptr;
  ~LtProblem() {
    if (pref) a->preferenceDestroy(pref);
    if (lc) a->layoutDestroy(lc);
    if (lb) a->layoutDestroy(lb);
    if (la) a->layoutDestroy(la);
    if (op) a->matmulDescDestroy(op);
  }
};

Napi::Value CublasLtLoop(const Napi::CallbackInfo& info) {
  const DType d = toDType(int(argInt(info, 0)));
  const int64_t aId = argInt(info, 1), bId = argInt(info, 2), oId = argInt(info, 3);
  const int64_t M = argInt(info, 4), N = argInt(info, 5), K = argInt(info, 6), n = argInt(info, 7);
  MT_CHECK(d == DType::F32 || d == DType::BF16 || d == DType::F16, "hostBench.cublasLtLoop: f32, bf16 or f16");
  MT_CHECK(M >= 1 && N >= 1 && K >= 1 && n >= 1, "hostBench.cublasLtLoop: M, N, K and n must be >= 1, got ", M, ", ", N, ", ",
           K, ", ", n);
  std::string why;
  const CublasLtApi* a = cublasLt(&why);
  MT_CHECK(a, "hostBench.cublasLtLoop: ", why);
  const int code = storageAt(oId).device;
  MT_CHECK(isCudaCode(code) && storageAt(aId).device == code && storageAt(bId).device == code,
           "hostBench.cublasLtLoop: a, b and out must be on one CUDA device");
  const int dev = code - 1;
  const size_t item = itemsize(d);
  const void* A = cudaDataPtr<uint8_t>(aId, 0, M * K * int64_t(item));
  const void* B = cudaDataPtr<uint8_t>(bId, 0, K * N * int64_t(item));
  void* D = cudaDataPtr<uint8_t>(oId, 0, M * N * int64_t(item));
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const int t = d == DType::F32 ? lt::kR32F : d == DType::BF16 ? lt::kR16BF : lt::kR16F;
  static lt::Handle handles[kMaxCudaDevices] = {};  // one per device, kept (no cublasLtDestroy declared)
  if (!handles[dev]) ltCheck(a->create(&handles[dev]), "cublasLtCreate");
  const uint64_t ws = uint64_t(32) << 20;
  const int64_t wsId = allocStorage(size_t(ws), Tag::Other, code, false);
  double secs = 0;
  try {
    LtProblem p{a};
    ltCheck(a->matmulDescCreate(&p.op, lt::kCompute32F, lt::kR32F), "descriptor");
    const int opN = lt::kOpN;
    ltCheck(a->matmulDescSetAttribute(p.op, lt::kDescTransA, &opN, sizeof(opN)), "transA");
    ltCheck(a->matmulDescSetAttribute(p.op, lt::kDescTransB, &opN, sizeof(opN)), "transB");
    ltCheck(a->layoutCreate(&p.la, t, uint64_t(N), uint64_t(K), N), "layout B");
    ltCheck(a->layoutCreate(&p.lb, t, uint64_t(K), uint64_t(M), K), "layout A");
    ltCheck(a->layoutCreate(&p.lc, t, uint64_t(N), uint64_t(M), N), "layout out");
    ltCheck(a->preferenceCreate(&p.pref), "preference");
    ltCheck(a->preferenceSetAttribute(p.pref, lt::kPrefMaxWorkspaceBytes, &ws, sizeof(ws)), "workspace");
    lt::HeuristicResult best{};
    int found = 0;
    ltCheck(a->algoGetHeuristic(handles[dev], p.op, p.la, p.lb, p.lc, p.lc, p.pref, 1, &best, &found), "heuristic");
    MT_CHECK(found > 0, "hostBench.cublasLtLoop: no algorithm for [", M, " x ", K, "] @ [", K, " x ", N, "]");
    const float one = 1, zero = 0;
    void* wsPtr = storageAt(wsId).ptr;
    auto run = [&] {
      ltCheck(a->matmul(handles[dev], p.op, &one, B, p.la, A, p.lb, &zero, D, p.lc, D, p.lc, &best.algo, wsPtr, ws, s),
              "cublasLtMatmul");
    };
    run();  // loads the kernel
    countHostSync(dev);
    cudaCheck(cudaStreamSynchronize(s), "hostBench.cublasLtLoop: cudaStreamSynchronize (before)");
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < n; i++) run();
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    countHostSync(dev);
    cudaCheck(cudaStreamSynchronize(s), "hostBench.cublasLtLoop: cudaStreamSynchronize (after)");
  } catch (...) {
    freeStorage(wsId);
    throw;
  }
  freeStorage(wsId);
  return Napi::Number::New(info.Env(), secs);
}

}  // namespace

void registerCudaHostBench(Napi::Object cuda) {
  auto o = Napi::Object::New(cuda.Env());
  MT_EXPORT(o, "noop", Noop);
  MT_EXPORT(o, "loop", Loop);
  MT_EXPORT(o, "cublasLtLoop", CublasLtLoop);
  cuda.Set("hostBench", o);
}

}  // namespace mt
#endif
