// CUDA graphs of a device's compute stream (src/tensor/cuda_graph.ts): capture the work a function
// queues, then replay it with one cudaGraphLaunch instead of one host call per op (the host cost
// of a ResNet step is ~1300 ops at ~20 us). The graph's memory is a pool of the caching allocator
// (device_memory.h, "Graph pools"); a host wait during capture throws (host_sync.h). Captured in
// relaxed mode: meshtrain's own code allocates with cudaMalloc during a capture, and other
// threads (the NCCL watchdog, pinned staging) keep running. CUDA builds only.
#ifdef MESHTRAIN_CUDA
#include <napi.h>
#include <cstdint>
#include <unordered_map>
#include "cuda/census.h"
#include "cuda/device_memory.h"
#include "cuda/host_sync.h"
#include "cuda/runtime.h"
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

struct Graph {
  int dev = 0;
  bool capturing = true;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  size_t nodes = 0;
};

std::unordered_map<int64_t, Graph>& graphs() {
  static std::unordered_map<int64_t, Graph> g;
  return g;
}
int64_t nextId = 1;

Graph& graphAt(int64_t id, const char* op) {
  auto it = graphs().find(id);
  MT_CHECK(it != graphs().end(), op, ": no CUDA graph ", id, " (released, or its capture failed)");
  return it->second;
}

// This thread and the allocator stop capturing for g (the stream's capture mode is the caller's).
void stopCapturing(const Graph& g) {
  setCapturingDevice(-1);
  cudaPoolCaptureEnd(g.dev);
}

// Destroys what g holds, returns its pool to the cache and forgets it; g is gone after.
void discard(int64_t id, Graph& g) {
  if (g.exec) cudaGraphExecDestroy(g.exec);
  if (g.graph) cudaGraphDestroy(g.graph);
  cudaGetLastError();
  cudaPoolRelease(id);
  graphs().erase(id);
}

// Ends a capture that failed or is abandoned: the stream leaves capture mode, the partial graph
// and the pool go.
void abandon(int64_t id, Graph& g) {
  stopCapturing(g);
  cudaStreamEndCapture(computeStream(g.dev), &g.graph);
  discard(id, g);
}

// cudaGraphBegin(dev) -> id: from here until cudaGraphEnd, work queued on cuda:dev's compute
// stream is recorded, not run, and its blocks come from the graph's pool.
Napi::Value Begin(const Napi::CallbackInfo& info) {
  int64_t dev = argInt(info, 0);
  MT_CHECK(dev >= 0 && dev < cudaDeviceCountCached(), "cudaGraphBegin: no device cuda:", dev);
  for (auto& [id, g] : graphs())
    MT_CHECK(!g.capturing, "cudaGraphBegin: CUDA graph ", id, " is still being captured on cuda:", g.dev,
             "; captures do not nest");
  int64_t id = nextId++;
  cudaUseDevice(int(dev));
  cudaStream_t s = computeStream(int(dev));
  cudaPoolCaptureBegin(int(dev), id);
  cudaError_t err = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
  if (err != cudaSuccess) {
    cudaPoolCaptureEnd(int(dev));
    cudaPoolRelease(id);
    cudaCheck(err, "cudaStreamBeginCapture");
  }
  graphs()[id] = Graph{int(dev)};
  setCapturingDevice(int(dev));
  return Napi::Number::New(info.Env(), double(id));
}

// cudaGraphEnd(id) -> node count: ends the capture and instantiates the graph.
Napi::Value End(const Napi::CallbackInfo& info) {
  int64_t id = argInt(info, 0);
  Graph& g = graphAt(id, "cudaGraphEnd");
  MT_CHECK(g.capturing, "cudaGraphEnd: CUDA graph ", id, " is not being captured");
  stopCapturing(g);
  cudaUseDevice(g.dev);
  cudaError_t err = cudaStreamEndCapture(computeStream(g.dev), &g.graph);
  if (err == cudaSuccess) err = cudaGraphInstantiate(&g.exec, g.graph, 0ULL);
  if (err == cudaSuccess) err = cudaGraphGetNodes(g.graph, nullptr, &g.nodes);
  if (err != cudaSuccess) {
    discard(id, g);
    cudaCheck(err, "ending the CUDA graph's capture (cudaStreamEndCapture, cudaGraphInstantiate)");
  }
  g.capturing = false;
  return Napi::Number::New(info.Env(), double(g.nodes));
}

// cudaGraphAbort(id): ends a capture whose function threw; nothing is kept.
Napi::Value Abort(const Napi::CallbackInfo& info) {
  int64_t id = argInt(info, 0);
  auto it = graphs().find(id);
  if (it != graphs().end() && it->second.capturing) abandon(id, it->second);
  return info.Env().Undefined();
}

// cudaGraphReplay(id): queues the whole graph on its device's compute stream.
Napi::Value Replay(const Napi::CallbackInfo& info) {
  int64_t id = argInt(info, 0);
  Graph& g = graphAt(id, "cudaGraphReplay");
  MT_CHECK(!g.capturing, "cudaGraphReplay: CUDA graph ", id, " is still being captured");
  cudaUseDevice(g.dev);
  cudaStream_t s = computeStream(g.dev);
  MT_CENSUS_CALL("graph", "cudaGraphLaunch", 0);
  cudaCheck(cudaGraphLaunch(g.exec, s), "cudaGraphLaunch");
  MT_CENSUS_DONE(s);
  return info.Env().Undefined();
}

// cudaGraphRelease(id): destroys the graph; its pool's free blocks return to the cache. Queued
// replays finish first: the blocks are reused only by work queued after them on the same stream.
Napi::Value Release(const Napi::CallbackInfo& info) {
  int64_t id = argInt(info, 0);
  auto it = graphs().find(id);
  if (it == graphs().end()) return info.Env().Undefined();
  Graph& g = it->second;
  if (g.capturing) {
    abandon(id, g);
    return info.Env().Undefined();
  }
  cudaUseDevice(g.dev);
  discard(id, g);
  return info.Env().Undefined();
}

}  // namespace

void registerCudaGraph(Napi::Object exports) {
  MT_EXPORT(exports, "cudaGraphBegin", Begin);
  MT_EXPORT(exports, "cudaGraphEnd", End);
  MT_EXPORT(exports, "cudaGraphAbort", Abort);
  MT_EXPORT(exports, "cudaGraphReplay", Replay);
  MT_EXPORT(exports, "cudaGraphRelease", Release);
}

}  // namespace mt
#endif
