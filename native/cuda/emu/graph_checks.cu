// Self-checks of stream capture and graphs on the emulated device (test tool, emulation build
// only): `native.cudaEmuGraphChecks.run(name)` captures work, replays it, or does what the device
// refuses during a capture, and returns what the emulator reported, for
// test/unit/cuda_emu_graph.test.ts.
#ifdef MESHTRAIN_CUDA_EMU
#include <napi.h>
#include <string>
#include <vector>
#include "cuda/common.cuh"
#include "cuda/cudnn_api.h"
#include "cuda/device_memory.h"
#include "cuda/emu/api_counts.h"
#include "cuda/libraries.h"
#include "cuda/runtime.h"
#include "util/check.h"

namespace mt {
namespace {

// out[i] += scale * in[i]: reads what the memset node wrote, so node order shows in the result.
__global__ void addScaled(const float* in, float* out, int64_t n, float scale) {
  MT_CU_LOOP(i, n) out[i] += scale * in[i];
}
__global__ void writeAll(float* p, int64_t n) {
  MT_CU_LOOP(i, n) p[i] = 3.0f;
}

std::string errorText(cudaError_t e) { return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e); }

float* floats(size_t n) {
  void* p = nullptr;
  cudaCheck(cudaMalloc(&p, n * sizeof(float)), "cudaMalloc");
  return static_cast<float*>(p);
}
std::vector<float> read(const float* d, size_t n) {
  std::vector<float> h(n);
  cudaCheck(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
  return h;
}
void write(float* d, const std::vector<float>& h) {
  cudaCheck(cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
}
Napi::Array jsArray(Napi::Env env, const std::vector<float>& h) {
  auto a = Napi::Array::New(env);
  for (uint32_t i = 0; i < h.size(); i++) a.Set(i, double(h[i]));
  return a;
}
uint64_t count(const char* name) {
  for (const auto& [n, c] : emu::apiCounts())
    if (n == name) return c;
  return 0;
}
cudaStream_t newStream() {
  cudaStream_t s = nullptr;
  cudaCheck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  return s;
}
size_t nodeCount(cudaGraph_t g) {
  size_t n = 0;
  cudaCheck(cudaGraphGetNodes(g, nullptr, &n), "cudaGraphGetNodes");
  return n;
}

// memset + kernel + device-to-device copy captured once, replayed twice with new input between.
Napi::Value Replay(Napi::Env env) {
  constexpr int64_t n = 8;
  cudaStream_t s = newStream();
  float *in = floats(n), *out = floats(n), *copy = floats(n);
  write(in, {1, 2, 3, 4, 5, 6, 7, 8});
  auto o = Napi::Object::New(env);
  const uint64_t launchesBefore = count("cudaLaunchKernel");
  float scale = 2.0f;
  cudaCheck(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaCheck(cudaStreamIsCapturing(s, &status), "cudaStreamIsCapturing");
  o.Set("statusDuring", int(status));
  cudaCheck(cudaMemsetAsync(out, 0, n * sizeof(float), s), "cudaMemsetAsync");
  MT_LAUNCH(addScaled, 1, 64, 0, s, in, out, n, scale);
  cudaCheck(cudaGetLastError(), "addScaled");
  cudaCheck(cudaMemcpyAsync(copy, out, n * sizeof(float), cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
  o.Set("hookQuery", mtEmuCaptureHook(s, nullptr, nullptr, nullptr));  // asks, records nothing
  cudaGraph_t graph = nullptr;
  cudaCheck(cudaStreamEndCapture(s, &graph), "cudaStreamEndCapture");
  cudaCheck(cudaStreamIsCapturing(s, &status), "cudaStreamIsCapturing");
  o.Set("statusAfter", int(status));
  o.Set("launchesCaptured", double(count("cudaLaunchKernel") - launchesBefore));
  scale = 5.0f;  // the node keeps the value it was captured with
  o.Set("afterCapture", jsArray(env, read(copy, n)));  // recorded, not run: still fresh memory (NaN)
  o.Set("nodes", double(nodeCount(graph)));
  cudaGraphExec_t exec = nullptr;
  cudaCheck(cudaGraphInstantiate(&exec, graph, 0ULL), "cudaGraphInstantiate");
  cudaCheck(cudaGraphDestroy(graph), "cudaGraphDestroy");  // the instance keeps the nodes
  emu::resetApiCounts();
  write(out, std::vector<float>(n, 100.0f));  // the memset node must clear this at each replay
  cudaCheck(cudaGraphLaunch(exec, s), "cudaGraphLaunch");
  cudaCheck(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  o.Set("first", jsArray(env, read(copy, n)));
  write(in, {10, 20, 30, 40, 50, 60, 70, 80});
  write(out, std::vector<float>(n, 100.0f));
  cudaCheck(cudaGraphLaunch(exec, s), "cudaGraphLaunch");
  cudaCheck(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  o.Set("second", jsArray(env, read(copy, n)));
  auto counts = Napi::Object::New(env);
  for (const char* k : {"cudaGraphLaunch", "cudaLaunchKernel", "cudaMemsetAsync", "cudaMemcpyAsync"}) counts.Set(k, double(count(k)));
  o.Set("replayCounts", counts);
  cudaCheck(cudaGraphExecDestroy(exec), "cudaGraphExecDestroy");
  const cudaError_t again = cudaGraphLaunch(exec, s);
  o.Set("destroyedExec", errorText(again));
  cudaFree(in), cudaFree(out), cudaFree(copy);
  cudaStreamDestroy(s);
  return o;
}

// What the device refuses during a capture: the call's error, the capture's status after it, and
// what cudaStreamEndCapture returns.
Napi::Value Illegal(Napi::Env env, const std::string& which) {
  cudaGetLastError();
  cudaStream_t s = newStream(), other = newStream();
  float* p = floats(16);
  cudaEvent_t ev = nullptr, outside = nullptr;
  cudaCheck(cudaEventCreate(&ev), "cudaEventCreate");
  cudaCheck(cudaEventCreate(&outside), "cudaEventCreate");
  cudaCheck(cudaEventRecord(outside, other), "cudaEventRecord");
  cudaCheck(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
  MT_LAUNCH(writeAll, 1, 32, 0, s, p, int64_t(16));
  cudaCheck(cudaEventRecord(ev, s), "cudaEventRecord (captured)");
  std::vector<float> host(16);
  float ms = 0;
  cudaError_t e = cudaSuccess;
  if (which == "streamSynchronize") e = cudaStreamSynchronize(s);
  else if (which == "streamQuery") e = cudaStreamQuery(s);
  else if (which == "deviceSynchronize") e = cudaDeviceSynchronize();
  else if (which == "memcpy") e = cudaMemcpy(host.data(), p, 64, cudaMemcpyDeviceToHost);
  else if (which == "memset") e = cudaMemset(p, 0, 64);
  else if (which == "memcpyAsyncToHost") e = cudaMemcpyAsync(host.data(), p, 64, cudaMemcpyDeviceToHost, s);
  else if (which == "eventSynchronize") e = cudaEventSynchronize(ev);
  else if (which == "eventQuery") e = cudaEventQuery(ev);
  else if (which == "elapsedTime") e = cudaEventElapsedTime(&ms, outside, ev);
  else if (which == "fork") e = cudaStreamWaitEvent(other, ev, 0);
  else if (which == "waitOutside") e = cudaStreamWaitEvent(s, outside, 0);
  else if (which == "beginTwice") e = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
  else throw Error(cat("cudaEmuGraphChecks.run: unknown illegal call '", which, "'"));
  auto o = Napi::Object::New(env);
  o.Set("error", errorText(e));
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaCheck(cudaStreamIsCapturing(s, &status), "cudaStreamIsCapturing");
  o.Set("status", int(status));
  // Work after the invalidation is refused too (a launch reports it as the last error).
  MT_LAUNCH(writeAll, 1, 32, 0, s, p, int64_t(16));
  o.Set("launchAfter", errorText(cudaGetLastError()));
  cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(1);
  o.Set("end", errorText(cudaStreamEndCapture(s, &graph)));
  o.Set("graphNull", graph == nullptr);
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
  cudaEventDestroy(ev), cudaEventDestroy(outside);
  cudaFree(p);
  cudaStreamDestroy(s), cudaStreamDestroy(other);
  return o;
}

// Capture misuse outside a capture: the legacy stream, ending what never began, a destroyed graph.
Napi::Value Misuse(Napi::Env env) {
  auto o = Napi::Object::New(env);
  cudaStream_t s = newStream();
  o.Set("legacy", errorText(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeRelaxed)));
  cudaGraph_t g = nullptr;
  o.Set("endNotCapturing", errorText(cudaStreamEndCapture(s, &g)));
  o.Set("badMode", errorText(cudaStreamBeginCapture(s, cudaStreamCaptureMode(7))));
  cudaCheck(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
  o.Set("destroyCapturing", errorText(cudaStreamDestroy(s)));
  cudaCheck(cudaStreamEndCapture(s, &g), "cudaStreamEndCapture (empty)");
  o.Set("emptyNodes", double(nodeCount(g)));
  cudaCheck(cudaGraphDestroy(g), "cudaGraphDestroy");
  cudaGraphExec_t x = nullptr;
  o.Set("instantiateDestroyed", errorText(cudaGraphInstantiate(&x, g, 0ULL)));
  o.Set("destroyTwice", errorText(cudaGraphDestroy(g)));
  cudaGetLastError();
  cudaStreamDestroy(s);
  return o;
}

// Replays that must fault, naming the graph node: the block a captured kernel writes was
// cudaFree'd, or handed back to meshtrain's caching allocator, or is written past its end.
Napi::Value Fault(Napi::Env env, const std::string& which) {
  cudaGetLastError();
  cudaStream_t s = newStream();
  size_t cap = 0;
  const bool cached = which == "cached";
  auto* p = cached ? static_cast<float*>(cudaAllocBlock(0, 64 * sizeof(float), &cap)) : floats(64);
  float* marker = floats(4);
  cudaCheck(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
  MT_LAUNCH(writeAll, 1, 64, 0, s, p, int64_t(which == "pastEnd" ? 65 : 64));
  cudaCheck(cudaMemsetAsync(marker, 0, 4 * sizeof(float), s), "cudaMemsetAsync");  // after the fault: must not run
  cudaGraph_t g = nullptr;
  cudaCheck(cudaStreamEndCapture(s, &g), "cudaStreamEndCapture");
  cudaGraphExec_t x = nullptr;
  cudaCheck(cudaGraphInstantiate(&x, g, 0ULL), "cudaGraphInstantiate");
  if (which == "freed") cudaCheck(cudaFree(p), "cudaFree");
  if (cached) cudaFreeBlock(0, p, cap);
  auto o = Napi::Object::New(env);
  o.Set("launch", errorText(cudaGraphLaunch(x, s)));
  o.Set("sync", errorText(cudaStreamSynchronize(s)));
  o.Set("marker", jsArray(env, read(marker, 4)));
  cudaGraphExecDestroy(x), cudaGraphDestroy(g);
  if (which == "pastEnd") cudaFree(p);
  cudaFree(marker);
  cudaStreamDestroy(s);
  cudaGetLastError();
  return o;
}

// The reference cuBLASLt and cuDNN on a capturing stream: recorded (nothing computed until a
// replay), their descriptors destroyed before it, the replay reading the inputs of its time.
Napi::Value Libraries(Napi::Env env) {
  std::string why;
  const CublasLtApi* lt = cublasLt(&why);
  MT_CHECK(lt, "cudaEmuGraphChecks.libraries: ", why);
  const CudnnApi* dnn = cudnn(&why);
  MT_CHECK(dnn, "cudaEmuGraphChecks.libraries: ", why);
  cudaStream_t s = newStream();
  auto o = Napi::Object::New(env);
  // D (2x2, col-major) = A (2x3) B (3x2); y (1x1x2x2) = x (1x1x3x3) conv w (1x1x2x2).
  float *a = floats(6), *b = floats(6), *d = floats(4), *x = floats(9), *w = floats(4), *y = floats(4);
  write(a, {1, 2, 3, 4, 5, 6}), write(b, {1, 0, 2, 1, 1, 1});
  write(x, {1, 2, 3, 4, 5, 6, 7, 8, 9}), write(w, {1, 0, 0, 1});
  lt::Handle h = nullptr;
  lt->create(&h);
  lt::MatmulDesc op = nullptr;
  lt::Layout la = nullptr, lb = nullptr, ld = nullptr;
  lt->matmulDescCreate(&op, lt::kCompute32F, lt::kR32F);
  lt->layoutCreate(&la, lt::kR32F, 2, 3, 2);
  lt->layoutCreate(&lb, lt::kR32F, 3, 2, 3);
  lt->layoutCreate(&ld, lt::kR32F, 2, 2, 2);
  dnn9::Handle dh = nullptr;
  dnn->create(&dh);
  dnn->setStream(dh, s);
  dnn9::TensorDesc xd = nullptr, yd = nullptr;
  dnn9::FilterDesc wd = nullptr;
  dnn9::ConvDesc cd = nullptr;
  dnn->createTensorDesc(&xd), dnn->createTensorDesc(&yd), dnn->createFilterDesc(&wd), dnn->createConvDesc(&cd);
  const int xdims[4] = {1, 1, 3, 3}, xstr[4] = {9, 9, 3, 1}, ydims[4] = {1, 1, 2, 2}, ystr[4] = {4, 4, 2, 1}, wdims[4] = {1, 1, 2, 2};
  const int pad[2] = {0, 0}, one[2] = {1, 1};
  dnn->setTensorNd(xd, dnn9::kFloat, 4, xdims, xstr), dnn->setTensorNd(yd, dnn9::kFloat, 4, ydims, ystr);
  dnn->setFilterNd(wd, dnn9::kFloat, dnn9::kFormatNCHW, 4, wdims);
  dnn->setConvNd(cd, 2, pad, one, one, dnn9::kCrossCorrelation, dnn9::kFloat);
  dnn->setConvMathType(cd, dnn9::kFmaMath);
  float alpha = 1, beta = 0;
  cudaCheck(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
  o.Set("matmul", lt->matmul(h, op, &alpha, a, la, b, lb, &beta, d, ld, d, ld, nullptr, nullptr, 0, s));
  o.Set("conv", dnn->forward(dh, &alpha, xd, x, wd, w, cd, 0, nullptr, 0, &beta, yd, y));
  cudaGraph_t g = nullptr;
  cudaCheck(cudaStreamEndCapture(s, &g), "cudaStreamEndCapture");
  alpha = 10;  // host scalars are read at the call, as cuBLASLt/cuDNN read them
  // Descriptors destroyed before any replay: the nodes hold their contents.
  for (auto l : {la, lb, ld}) lt->layoutDestroy(l);
  lt->matmulDescDestroy(op);
  dnn->destroyTensorDesc(xd), dnn->destroyTensorDesc(yd), dnn->destroyFilterDesc(wd), dnn->destroyConvDesc(cd);
  o.Set("nodes", double(nodeCount(g)));
  o.Set("matmulBeforeReplay", jsArray(env, read(d, 4)));
  cudaGraphExec_t ex = nullptr;
  cudaCheck(cudaGraphInstantiate(&ex, g, 0ULL), "cudaGraphInstantiate");
  cudaCheck(cudaGraphLaunch(ex, s), "cudaGraphLaunch");
  cudaCheck(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  o.Set("matmulFirst", jsArray(env, read(d, 4)));
  o.Set("convFirst", jsArray(env, read(y, 4)));
  write(a, {2, 4, 6, 8, 10, 12});
  write(x, {9, 8, 7, 6, 5, 4, 3, 2, 1});
  cudaCheck(cudaGraphLaunch(ex, s), "cudaGraphLaunch");
  cudaCheck(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  o.Set("matmulSecond", jsArray(env, read(d, 4)));
  o.Set("convSecond", jsArray(env, read(y, 4)));
  cudaGraphExecDestroy(ex), cudaGraphDestroy(g);
  for (float* p : {a, b, d, x, w, y}) cudaFree(p);
  cudaStreamDestroy(s);
  return o;
}

Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MT_CHECK(info.Length() > 0 && info[0].IsString(), "cudaEmuGraphChecks.run(name): name must be a string");
  const std::string name = info[0].As<Napi::String>();
  cudaSetDevice(0);
  if (name == "replay") return Replay(env);
  if (name == "misuse") return Misuse(env);
  if (name == "libraries") return Libraries(env);
  if (name.rfind("illegal:", 0) == 0) return Illegal(env, name.substr(8));
  if (name.rfind("fault:", 0) == 0) return Fault(env, name.substr(6));
  throw Error(cat("cudaEmuGraphChecks.run: unknown scenario '", name, "'"));
}

}  // namespace

void registerCudaEmuGraphChecks(Napi::Env env, Napi::Object exports) {
  auto o = Napi::Object::New(env);
  MT_EXPORT(o, "run", Run);
  exports.Set("cudaEmuGraphChecks", o);
}

}  // namespace mt
#endif
