// `native.cudaCaptureProbe(name)` (test tool, CUDA builds): stream capture scenarios through the
// CUDA runtime with no kernel of ours (memsets, copies and events only), so the same code runs
// on a GPU and on the emulated device (emu/graph.cc) and test/unit/cuda_capture_codes.test.ts can
// hold the emulator to the error codes the driver returns.
#ifdef MESHTRAIN_CUDA
#include <napi.h>
#include <string>
#include <vector>
#include "cuda/runtime.h"
#include "util/check.h"

namespace mt {
namespace {

constexpr size_t kBytes = 64;

std::string name(cudaError_t e) { return cudaGetErrorName(e); }

// Everything one scenario creates, released in the destructor (errors there are ignored: a probe
// may leave a capture invalidated or a stream joined to it).
struct Scratch {
  cudaStream_t s = nullptr, other = nullptr;
  cudaEvent_t ev = nullptr, outside = nullptr;
  void *p = nullptr, *q = nullptr;
  Scratch() {
    cudaCheck(cudaSetDevice(0), "cudaCaptureProbe: cudaSetDevice");
    cudaCheck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaCaptureProbe: cudaStreamCreateWithFlags");
    cudaCheck(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking), "cudaCaptureProbe: cudaStreamCreateWithFlags");
    cudaCheck(cudaEventCreate(&ev), "cudaCaptureProbe: cudaEventCreate");
    cudaCheck(cudaEventCreate(&outside), "cudaCaptureProbe: cudaEventCreate");
    cudaCheck(cudaMalloc(&p, kBytes), "cudaCaptureProbe: cudaMalloc");
    cudaCheck(cudaMalloc(&q, kBytes), "cudaCaptureProbe: cudaMalloc");
  }
  ~Scratch() {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    for (cudaStream_t x : {s, other})
      if (cudaStreamIsCapturing(x, &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
        cudaGraph_t g = nullptr;
        if (cudaStreamEndCapture(x, &g) == cudaSuccess && g) cudaGraphDestroy(g);
      }
    cudaStreamSynchronize(s), cudaStreamSynchronize(other);
    cudaFree(p), cudaFree(q);
    cudaEventDestroy(ev), cudaEventDestroy(outside);
    cudaStreamDestroy(s), cudaStreamDestroy(other);
    cudaGetLastError();
  }
};

std::vector<int> bytesOf(const void* d) {
  unsigned char h[4] = {};
  cudaCheck(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), "cudaCaptureProbe: cudaMemcpy");
  return {h[0], h[1], h[2], h[3]};
}
Napi::Array jsArray(Napi::Env env, const std::vector<int>& v) {
  auto a = Napi::Array::New(env);
  for (uint32_t i = 0; i < v.size(); i++) a.Set(i, v[i]);
  return a;
}

// memset 7 into p, an event record, p copied to q: the nodes, and q before and after replays.
Napi::Value Replay(Napi::Env env) {
  Scratch x;
  auto o = Napi::Object::New(env);
  cudaCheck(cudaMemset(x.q, 0, kBytes), "cudaCaptureProbe: cudaMemset");
  cudaCheck(cudaStreamBeginCapture(x.s, cudaStreamCaptureModeRelaxed), "cudaCaptureProbe: cudaStreamBeginCapture");
  cudaCheck(cudaMemsetAsync(x.p, 7, kBytes, x.s), "cudaCaptureProbe: cudaMemsetAsync");
  cudaCheck(cudaEventRecord(x.ev, x.s), "cudaCaptureProbe: cudaEventRecord");
  cudaCheck(cudaMemcpyAsync(x.q, x.p, kBytes, cudaMemcpyDeviceToDevice, x.s), "cudaCaptureProbe: cudaMemcpyAsync");
  cudaGraph_t g = nullptr;
  cudaCheck(cudaStreamEndCapture(x.s, &g), "cudaCaptureProbe: cudaStreamEndCapture");
  size_t n = 0;
  cudaCheck(cudaGraphGetNodes(g, nullptr, &n), "cudaCaptureProbe: cudaGraphGetNodes");
  o.Set("nodes", double(n));
  o.Set("afterCapture", jsArray(env, bytesOf(x.q)));
  cudaGraphExec_t ex = nullptr;
  cudaCheck(cudaGraphInstantiate(&ex, g, 0ULL), "cudaCaptureProbe: cudaGraphInstantiate");
  for (const char* k : {"first", "second"}) {
    cudaCheck(cudaMemset(x.q, 0, kBytes), "cudaCaptureProbe: cudaMemset");
    cudaCheck(cudaGraphLaunch(ex, x.s), "cudaCaptureProbe: cudaGraphLaunch");
    cudaCheck(cudaStreamSynchronize(x.s), "cudaCaptureProbe: cudaStreamSynchronize");
    o.Set(k, jsArray(env, bytesOf(x.q)));
  }
  cudaCheck(cudaGraphExecDestroy(ex), "cudaCaptureProbe: cudaGraphExecDestroy");
  cudaCheck(cudaGraphDestroy(g), "cudaCaptureProbe: cudaGraphDestroy");
  return o;
}

// One call made while `s` captures a memset: its error, the capture status after it, what more
// work on `s` and cudaStreamEndCapture return.
Napi::Value During(Napi::Env env, const std::string& which) {
  Scratch x;
  std::vector<unsigned char> host(kBytes);
  cudaCheck(cudaEventRecord(x.outside, x.other), "cudaCaptureProbe: cudaEventRecord");
  cudaCheck(cudaStreamSynchronize(x.other), "cudaCaptureProbe: cudaStreamSynchronize");
  cudaCheck(cudaStreamBeginCapture(x.s, cudaStreamCaptureModeRelaxed), "cudaCaptureProbe: cudaStreamBeginCapture");
  cudaCheck(cudaMemsetAsync(x.p, 1, kBytes, x.s), "cudaCaptureProbe: cudaMemsetAsync");
  cudaCheck(cudaEventRecord(x.ev, x.s), "cudaCaptureProbe: cudaEventRecord (captured)");
  float ms = 0;
  cudaError_t e;
  if (which == "streamSynchronize") e = cudaStreamSynchronize(x.s);
  else if (which == "streamQuery") e = cudaStreamQuery(x.s);
  else if (which == "deviceSynchronize") e = cudaDeviceSynchronize();
  else if (which == "memcpy") e = cudaMemcpy(host.data(), x.q, kBytes, cudaMemcpyDeviceToHost);
  else if (which == "memset") e = cudaMemset(x.q, 0, kBytes);
  else if (which == "memcpyAsyncToHost") e = cudaMemcpyAsync(host.data(), x.p, kBytes, cudaMemcpyDeviceToHost, x.s);
  else if (which == "eventSynchronize") e = cudaEventSynchronize(x.ev);
  else if (which == "eventQuery") e = cudaEventQuery(x.ev);
  else if (which == "elapsedTime") e = cudaEventElapsedTime(&ms, x.outside, x.ev);
  else if (which == "fork") e = cudaStreamWaitEvent(x.other, x.ev, 0);
  else if (which == "waitOutside") e = cudaStreamWaitEvent(x.s, x.outside, 0);
  else if (which == "beginTwice") e = cudaStreamBeginCapture(x.s, cudaStreamCaptureModeRelaxed);
  else throw Error(cat("cudaCaptureProbe: unknown scenario 'during:", which, "'"));
  auto o = Napi::Object::New(env);
  o.Set("error", name(e));
  cudaGetLastError();
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  o.Set("isCapturing", name(cudaStreamIsCapturing(x.s, &st)));
  o.Set("status", int(st));
  o.Set("workAfter", name(cudaMemsetAsync(x.p, 2, kBytes, x.s)));
  cudaGraph_t g = nullptr;
  o.Set("end", name(cudaStreamEndCapture(x.s, &g)));
  o.Set("graph", g != nullptr);
  if (g) cudaGraphDestroy(g);
  cudaGetLastError();
  return o;
}

// Misuse outside a capture that leaves no dangling handle (the device may crash on those).
Napi::Value Misuse(Napi::Env env) {
  Scratch x;
  auto o = Napi::Object::New(env);
  cudaGraph_t g = nullptr;
  o.Set("legacy", name(cudaStreamBeginCapture(cudaStreamLegacy, cudaStreamCaptureModeRelaxed)));
  o.Set("endNotCapturing", name(cudaStreamEndCapture(x.s, &g)));
  o.Set("badMode", name(cudaStreamBeginCapture(x.s, cudaStreamCaptureMode(7))));
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  o.Set("statusAfter", name(cudaStreamIsCapturing(x.s, &st)) + " " + std::to_string(int(st)));
  cudaGetLastError();
  return o;
}

Napi::Value Probe(const Napi::CallbackInfo& info) {
  MT_CHECK(info.Length() > 0 && info[0].IsString(), "cudaCaptureProbe(name): name must be a string");
  const std::string n = info[0].As<Napi::String>();
  if (n == "replay") return Replay(info.Env());
  if (n == "misuse") return Misuse(info.Env());
  if (n.rfind("during:", 0) == 0) return During(info.Env(), n.substr(7));
  throw Error(cat("cudaCaptureProbe: unknown scenario '", n, "' (replay, misuse, during:<call>)"));
}

}  // namespace

void registerCudaCaptureProbe(Napi::Object exports) { MT_EXPORT(exports, "cudaCaptureProbe", Probe); }

}  // namespace mt
#endif
