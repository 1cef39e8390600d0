// Stream capture and CUDA graphs on the emulated device (test tool; docs/gpu.md, "Emulated
// device"). While a stream captures, the work issued to it is recorded as nodes instead of run:
// kernels (kernel.h, with their arguments by value), cudaMemsetAsync, device-to-device
// cudaMemcpyAsync (runtime.cc) and reference cuBLASLt/cuDNN calls (mtEmuCaptureHook). A captured
// cudaEventRecord adds no node, as on the device. cudaGraphLaunch runs the nodes in order as the
// stream's work; each replay checks kernel pointers against live allocations and guard bytes
// again, so a block the graph uses that was freed or handed to someone else is reported naming
// the node. A replay stops at the first node that faults (the device's context would be lost).
// Calls that are illegal during capture fail with the device's error and invalidate the capture.
#ifdef MESHTRAIN_CUDA_EMU
#include <dlfcn.h>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>
#include "cuda/emu/api_counts.h"
#include "cuda/emu/graph.h"
#include "cuda/emu/state.h"

namespace mt {
namespace emu {
namespace {

struct Node {
  std::string what;  // "kernel k (file.cu:12)", "cudaMemsetAsync of 64 bytes at 0x..."
  void (*run)(void*);
  void* ctx;
  void (*drop)(void*);
};
// A graph's nodes, shared by the graph and its executable instances (either may go first).
struct Nodes {
  std::vector<Node> list;
  Nodes() = default;
  Nodes(const Nodes&) = delete;
  Nodes& operator=(const Nodes&) = delete;
  ~Nodes() {
    for (Node& n : list)
      if (n.drop) n.drop(n.ctx);
  }
};

struct Capture {
  uint64_t id = 0;
  int device = 0;
  bool invalidated = false;
  std::string why;  // the first reason it was invalidated
  std::shared_ptr<Nodes> nodes = std::make_shared<Nodes>();
};
struct Graph {
  uint64_t id;
  int device;
  std::shared_ptr<Nodes> nodes;
};
struct Exec {
  uint64_t graphId;
  int device;
  std::shared_ptr<Nodes> nodes;
};

struct Registry {
  std::mutex mu;
  std::map<cudaStream_t, Capture> captures;
  std::set<Graph*> graphs;
  std::set<Exec*> execs;
  uint64_t nextId = 1;
};
Registry& reg() {
  static Registry* r = new Registry;  // never destroyed: library nodes' drop must not run after their .so closed
  return *r;
}
std::atomic<int> openCaptures{0};

// The node being replayed on this thread (for messages).
thread_local const Node* tNode = nullptr;
thread_local size_t tIndex = 0, tCount = 0;
thread_local uint64_t tGraph = 0;

std::string hex(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

cudaError_t fail(cudaError_t e, const std::string& detail) {
  setLastError(e, detail);
  return e;
}

void invalidate(Capture& c, const std::string& why) {
  if (!c.invalidated) c.why = why;
  c.invalidated = true;
}

}  // namespace

bool anyCapture() { return openCaptures.load(std::memory_order_relaxed) > 0; }

cudaStreamCaptureStatus captureStatus(cudaStream_t s) {
  if (!anyCapture()) return cudaStreamCaptureStatusNone;
  Registry& r = reg();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.captures.find(s);
  if (it == r.captures.end()) return cudaStreamCaptureStatusNone;
  return it->second.invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
}

uint64_t captureIdOf(cudaStream_t s) {
  if (!anyCapture()) return 0;
  Registry& r = reg();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.captures.find(s);
  return it == r.captures.end() ? 0 : it->second.id;
}

bool captureOpen(uint64_t id) {
  if (id == 0 || !anyCapture()) return false;
  Registry& r = reg();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& [s, c] : r.captures)
    if (c.id == id) return true;
  return false;
}

bool invalidateCapture(cudaStream_t s, const std::string& why) {
  Registry& r = reg();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.captures.find(s);
  if (it == r.captures.end()) return false;
  invalidate(it->second, why);
  return true;
}

bool invalidateCaptureId(uint64_t id, const std::string& why) {
  Registry& r = reg();
  std::lock_guard<std::mutex> lock(r.mu);
  for (auto& [s, c] : r.captures)
    if (c.id == id) {
      invalidate(c, why);
      return true;
    }
  return false;
}

int invalidateDeviceCaptures(int dev, const std::string& why) {
  Registry& r = reg();
  std::lock_guard<std::mutex> lock(r.mu);
  int n = 0;
  for (auto& [s, c] : r.captures)
    if (c.device == dev) invalidate(c, why), n++;
  return n;
}

cudaStreamCaptureStatus recordNode(cudaStream_t s, std::string what, void (*run)(void*), void* ctx, void (*drop)(void*)) {
  Registry& r = reg();
  std::unique_lock<std::mutex> lock(r.mu);
  auto it = r.captures.find(s);
  if (it == r.captures.end()) return cudaStreamCaptureStatusNone;
  if (it->second.invalidated) {
    const std::string why = it->second.why;
    lock.unlock();
    if (drop) drop(ctx);
    fail(cudaErrorStreamCaptureInvalidated, what + " on stream " + hex(s) + ": its capture was invalidated by " + why);
    return cudaStreamCaptureStatusInvalidated;
  }
  it->second.nodes->list.push_back(Node{std::move(what), run, ctx, drop});
  return cudaStreamCaptureStatusActive;
}

cudaStreamCaptureStatus recordLaunch(const LaunchInfo& li, void (*run)(void*), void* ctx, void (*drop)(void*)) {
  return recordNode(li.stream, launchName(li), run, ctx, drop);
}

bool replaying() { return tNode != nullptr; }

std::string replayWhere() {
  if (!tNode) return "";
  return "cudaGraphLaunch: graph " + std::to_string(tGraph) + " node " + std::to_string(tIndex) + " of " + std::to_string(tCount) +
         " (" + tNode->what + ")";
}

bool replayLaunchOk(const LaunchInfo& li, const void* const* ptrs, int nPtrs) {
  (void)li;  // named by the node (replayWhere)
  const int dev = currentDevice();
  for (int i = 0; i < nPtrs; i++) {
    if (!ptrs[i]) continue;
    std::string p = kernelPointerProblem(ptrs[i], dev);
    if (!p.empty()) {
      setPendingError(cudaErrorIllegalAddress, replayWhere() + ": pointer argument " + std::to_string(i) + ": " + p);
      return false;
    }
  }
  return true;
}

}  // namespace emu
}  // namespace mt

using namespace mt::emu;

extern "C" {

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  MT_EMU_COUNT();
  if (s == nullptr || s == cudaStreamLegacy)
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture: the legacy (NULL) stream cannot capture; use a created stream");
  if (s == cudaStreamPerThread)
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture: capturing cudaStreamPerThread is not emulated; use a created stream");
  if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal && mode != cudaStreamCaptureModeRelaxed)
    return fail(cudaErrorInvalidValue, "cudaStreamBeginCapture: mode " + std::to_string(int(mode)) + " (Global 0, ThreadLocal 1, Relaxed 2)");
  std::string why;
  if (!streamUsable(s, currentDevice(), &why)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamBeginCapture: " + why);
  Registry& r = reg();
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.captures.count(s))
    return fail(cudaErrorIllegalState, "cudaStreamBeginCapture: stream " + hex(s) + " is already capturing (end that capture first)");
  Capture& c = r.captures[s];
  c.id = r.nextId++;
  c.device = currentDevice();
  openCaptures.fetch_add(1, std::memory_order_relaxed);
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph) {
  MT_EMU_COUNT();
  if (!graph) return fail(cudaErrorInvalidValue, "cudaStreamEndCapture: null graph pointer");
  *graph = nullptr;
  Registry& r = reg();
  std::unique_lock<std::mutex> lock(r.mu);
  auto it = r.captures.find(s);
  if (it == r.captures.end())
    return fail(cudaErrorIllegalState, "cudaStreamEndCapture: stream " + hex(s) + " is not capturing (no cudaStreamBeginCapture on it)");
  Capture c = std::move(it->second);
  r.captures.erase(it);
  openCaptures.fetch_sub(1, std::memory_order_relaxed);
  if (c.invalidated) {
    lock.unlock();
    c.nodes.reset();  // drops the recorded nodes outside the lock
    return fail(cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture: the capture on stream " + hex(s) + " was invalidated by " + c.why +
                                                       " (no graph)");
  }
  auto* g = new Graph{c.id, c.device, std::move(c.nodes)};
  r.graphs.insert(g);
  *graph = reinterpret_cast<cudaGraph_t>(g);
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
  MT_EMU_COUNT();
  if (!status) return fail(cudaErrorInvalidValue, "cudaStreamIsCapturing: null status pointer");
  std::string why;
  if (!streamUsable(s, currentDevice(), &why)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamIsCapturing: " + why);
  *status = captureStatus(s);
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags) {
  MT_EMU_COUNT();
  if (!exec) return fail(cudaErrorInvalidValue, "cudaGraphInstantiate: null exec pointer");
  // AutoFreeOnLaunch 1, Upload 2, DeviceLaunch 4, UseNodePriority 8: accepted, no effect here.
  if (flags & ~15ull) return fail(cudaErrorInvalidValue, "cudaGraphInstantiate: unknown flags " + std::to_string(flags));
  Registry& r = reg();
  std::lock_guard<std::mutex> lock(r.mu);
  auto* g = reinterpret_cast<Graph*>(graph);
  if (!r.graphs.count(g))
    return fail(cudaErrorInvalidResourceHandle, "cudaGraphInstantiate: graph " + hex(graph) + " is not a live graph (destroyed, or not from cudaStreamEndCapture)");
  auto* x = new Exec{g->id, g->device, g->nodes};
  r.execs.insert(x);
  *exec = reinterpret_cast<cudaGraphExec_t>(x);
  return cudaSuccess;
}

cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* count) {
  MT_EMU_COUNT();
  if (!count) return fail(cudaErrorInvalidValue, "cudaGraphGetNodes: null count pointer");
  Registry& r = reg();
  std::lock_guard<std::mutex> lock(r.mu);
  auto* g = reinterpret_cast<Graph*>(graph);
  if (!r.graphs.count(g)) return fail(cudaErrorInvalidResourceHandle, "cudaGraphGetNodes: graph " + hex(graph) + " is not a live graph");
  auto& list = g->nodes->list;
  if (nodes)  // as the runtime: the first *count handles, null past the last node
    for (size_t i = 0; i < *count; i++) nodes[i] = i < list.size() ? reinterpret_cast<cudaGraphNode_t>(&list[i]) : nullptr;
  *count = list.size();
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  MT_EMU_COUNT();
  std::shared_ptr<Nodes> nodes;
  uint64_t graphId = 0;
  int device = 0;
  {
    Registry& r = reg();
    std::lock_guard<std::mutex> lock(r.mu);
    auto* x = reinterpret_cast<Exec*>(exec);
    if (!r.execs.count(x))
      return fail(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: exec " + hex(exec) + " was destroyed or never instantiated");
    nodes = x->nodes, graphId = x->graphId, device = x->device;
  }
  const int dev = currentDevice();
  std::string why;
  if (!streamUsable(s, dev, &why)) return fail(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: " + why);
  if (device != dev)
    return fail(cudaErrorInvalidValue, "cudaGraphLaunch: graph " + std::to_string(graphId) + " was captured on cuda:" + std::to_string(device) +
                                           ", launched on a stream of cuda:" + std::to_string(dev));
  if (captureStatus(s) != cudaStreamCaptureStatusNone) {
    invalidateCapture(s, "cudaGraphLaunch into it");
    return fail(cudaErrorStreamCaptureUnsupported, "cudaGraphLaunch into capturing stream " + hex(s) +
                                                       ": a child graph node is not emulated (capture invalidated)");
  }
  if (pendingOn(dev)) return cudaSuccess;  // the device already faulted: nothing more runs
  struct Replaying {  // clears the node being replayed however the loop ends
    ~Replaying() { tNode = nullptr; }
  } guard;
  tGraph = graphId, tCount = nodes->list.size();
  for (size_t i = 0; i < nodes->list.size(); i++) {
    const Node& n = nodes->list[i];
    tNode = &n, tIndex = i;
    n.run(n.ctx);
    if (pendingOn(dev)) break;  // a faulting node ends the replay, as a lost context would
  }
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  MT_EMU_COUNT();
  Registry& r = reg();
  std::unique_lock<std::mutex> lock(r.mu);
  auto* x = reinterpret_cast<Exec*>(exec);
  if (!r.execs.erase(x)) return fail(cudaErrorInvalidResourceHandle, "cudaGraphExecDestroy: exec " + hex(exec) + " was destroyed or never instantiated");
  lock.unlock();
  delete x;  // the last owner of the nodes drops them
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  MT_EMU_COUNT();
  Registry& r = reg();
  std::unique_lock<std::mutex> lock(r.mu);
  auto* g = reinterpret_cast<Graph*>(graph);
  if (!r.graphs.erase(g)) return fail(cudaErrorInvalidResourceHandle, "cudaGraphDestroy: graph " + hex(graph) + " was destroyed or never created");
  lock.unlock();
  delete g;
  return cudaSuccess;
}

// The reference libraries' capture hook (their mtEmuSetCaptureHook): a node that runs the
// library's own by-value call at each replay, then scans the guard bytes naming the node.
int mtEmuCaptureHook(void* stream, void (*run)(void*), void* ctx, void (*drop)(void*)) {
  auto s = static_cast<cudaStream_t>(stream);
  if (captureStatus(s) == cudaStreamCaptureStatusNone) return 0;
  if (!run) return 1;  // a query (a call that must not run in a capture asks first): nothing recorded
  struct LibNode {
    void (*run)(void*);
    void* ctx;
    void (*drop)(void*);
  };
  Dl_info info{};
  const char* lib = dladdr(reinterpret_cast<void*>(run), &info) && info.dli_fname ? info.dli_fname : "a reference library";
  const char* slash = std::strrchr(lib, '/');
  const std::string what = std::string(slash ? slash + 1 : lib) + " call";
  auto* n = new LibNode{run, ctx, drop};
  const bool taken = cudaStreamCaptureStatusNone != recordNode(
      s, what,
      [](void* c) {
        auto* x = static_cast<LibNode*>(c);
        x->run(x->ctx);
        if (!skipWork()) checkGuardsAfter(replayWhere());
      },
      n,
      [](void* c) {
        auto* x = static_cast<LibNode*>(c);
        x->drop(x->ctx);
        delete x;
      });
  if (!taken) delete n;  // the capture ended in between: the library computes now
  return taken ? 1 : 0;
}

}  // extern "C"
#endif
