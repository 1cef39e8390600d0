// The emulated device's CUDA runtime (test tool): the cudart subset meshtrain calls, over host
// memory. Each allocation gets guard bytes after it, checked after every kernel and on free; new
// memory is filled with 0xff bytes (NaN in every float dtype) so unwritten outputs show. Work
// runs synchronously at launch, so streams and events only order what is already done; a
// kernel's execution error surfaces once, at the next synchronizing call (as on the device,
// except that the device's errors are sticky). MESHTRAIN_CUDA_EMU_SKIP_WORK=1 (skipWork) keeps the
// argument checks and copies but drops kernel bodies, fresh-memory fills and guard bytes; copies to
// the host read zeros. Every entry point counts its calls (api_counts.h; launches as
// cudaLaunchKernel), wrappers once: they call an uncounted twin. Stream capture (graph.cc): work
// for a capturing stream is recorded, and calls that would wait for captured work are refused.
#ifdef MESHTRAIN_CUDA_EMU
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <vector>
#include "cuda/emu/api_counts.h"
#include "cuda/emu/graph.h"
#include "cuda/emu/state.h"

namespace mt {
namespace emu {
namespace {

constexpr size_t kGuard = 256;            // guard bytes after each allocation
// Guard bytes and freed blocks hold 16-bit words 0xfffe and 0xfffd (at even addresses): NaN read
// as bf16, f16, f32 or f64, so an out-of-bounds or use-after-free read shows in the results too.
inline unsigned char guardByte(uintptr_t addr) { return (addr & 1) ? 0xff : 0xfe; }
inline unsigned char freedByte(uintptr_t addr) { return (addr & 1) ? 0xff : 0xfd; }
void fillPattern(uintptr_t from, size_t n, unsigned char (*pattern)(uintptr_t)) {
  auto* m = reinterpret_cast<unsigned char*>(from);
  for (size_t i = 0; i < n; i++) m[i] = pattern(from + i);
}
constexpr unsigned char kFreshByte = 0xff;  // NaN in f64/f32/bf16/f16, -1 in the integers

struct Alloc {
  size_t bytes = 0;     // what the caller uses: the guard starts here
  size_t capacity = 0;  // what cudaMalloc was asked for
  int device = 0;
  bool pinned = false;  // host memory from cudaHostAlloc/cudaMallocHost
  bool cached = false;  // freed into meshtrain's caching allocator
};

struct Stream {
  int device;
};
struct Event {
  int device;
  std::chrono::steady_clock::time_point at;
  bool recorded = false;
  uint64_t captureId = 0;  // last recorded in this capture (graph.cc), which may have ended
};

struct State {
  std::mutex mu;
  std::map<uintptr_t, Alloc> allocs;
  std::set<Stream*> streams;
  std::set<Event*> events;
  std::map<const void*, size_t> maxSmem;
  std::vector<size_t> used;
  std::vector<cudaError_t> pending;
  std::vector<std::string> pendingDetail;
  std::deque<std::string> recent;  // the last kernels launched, for messages about freed blocks
  int devices = 1;
  size_t capacity = size_t(80) << 30;
};

State& st() {
  static State* s = [] {
    auto* x = new State;
    if (const char* e = std::getenv("MESHTRAIN_CUDA_EMU_DEVICES")) x->devices = std::atoi(e);
    if (x->devices < 0) x->devices = 0;
    if (const char* e = std::getenv("MESHTRAIN_CUDA_EMU_MEMORY")) x->capacity = size_t(std::atoll(e));
    x->used.assign(size_t(x->devices), 0);
    x->pending.assign(size_t(x->devices), cudaSuccess);
    x->pendingDetail.assign(size_t(x->devices), "");
    return x;
  }();
  return *s;
}

thread_local int tDevice = 0;
thread_local cudaError_t tLast = cudaSuccess;
thread_local std::string tDetail;  // what the emulator found for the last error returned on this thread
thread_local cudaError_t tDetailCode = cudaSuccess;
thread_local std::string tErrorString;  // cudaGetErrorString's buffer

std::string hex(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

cudaError_t fail(cudaError_t e, const std::string& detail) {
  tLast = e;
  tDetail = detail;
  tDetailCode = e;
  return e;
}

// The allocation holding [p, p + n), or allocs.end(). Caller holds st().mu.
std::map<uintptr_t, Alloc>::iterator find(const void* p) {
  auto& a = st().allocs;
  auto it = a.upper_bound(uintptr_t(p));
  if (it == a.begin()) return a.end();
  --it;
  if (uintptr_t(p) >= it->first + it->second.capacity + kGuard) return a.end();
  return it;
}

// Why [p, p + n) is not usable device memory of `dev` (empty when it is).
std::string deviceRangeProblem(const void* p, size_t n, int dev, const char* what) {
  auto it = find(p);
  if (it == st().allocs.end() || it->second.pinned)
    return std::string(what) + ": " + hex(p) + " is not device memory (a host pointer, or freed with cudaFree)";
  const Alloc& a = it->second;
  size_t off = uintptr_t(p) - it->first;
  if (a.cached) return std::string(what) + ": " + hex(p) + " points into a freed (cached) block";
  if (a.device != dev)
    return std::string(what) + ": " + hex(p) + " is memory of cuda:" + std::to_string(a.device) + ", not cuda:" + std::to_string(dev);
  if (off + n > a.bytes)
    return std::string(what) + ": " + std::to_string(n) + " bytes at offset " + std::to_string(off) + " of an allocation of " +
           std::to_string(a.bytes) + " bytes run " + std::to_string(off + n - a.bytes) + " bytes past its end";
  return "";
}

bool isDevice(const void* p) {
  auto it = find(p);
  return it != st().allocs.end() && !it->second.pinned;
}

std::string guardDamage(uintptr_t base, const Alloc& a) {
  const unsigned char* g = reinterpret_cast<const unsigned char*>(base);
  size_t from = a.bytes, to = a.capacity + kGuard;
  for (size_t i = from; i < to; i++)
    if (g[i] != guardByte(base + i)) {
      size_t last = i;
      for (size_t j = i; j < to; j++)
        if (g[j] != guardByte(base + j)) last = j;
      return "bytes " + std::to_string(i - a.bytes) + ".." + std::to_string(last - a.bytes) + " past the end of an allocation of " +
             std::to_string(a.bytes) + " bytes at " + hex(reinterpret_cast<const void*>(base)) + " were written";
    }
  return "";
}

void fillGuard(uintptr_t base, const Alloc& a) {
  fillPattern(base + a.bytes, a.capacity + kGuard - a.bytes, guardByte);
}

std::string recentKernels() {
  std::string s;
  for (const auto& k : st().recent) s += (s.empty() ? "" : ", ") + k;
  return s.empty() ? "none" : s;
}

cudaError_t takePending(int dev) {
  State& s = st();
  std::lock_guard<std::mutex> lock(s.mu);
  if (dev < 0 || dev >= s.devices || s.pending[size_t(dev)] == cudaSuccess) return cudaSuccess;
  cudaError_t e = s.pending[size_t(dev)];
  std::string d = s.pendingDetail[size_t(dev)];
  s.pending[size_t(dev)] = cudaSuccess;
  return fail(e, d);
}

bool validDevice(int dev) { return dev >= 0 && dev < st().devices; }

cudaError_t noDevice() {
  return fail(st().devices == 0 ? cudaErrorNoDevice : cudaErrorInvalidDevice,
              "the emulated device count is " + std::to_string(st().devices) + " (MESHTRAIN_CUDA_EMU_DEVICES)");
}

unsigned char* alignedAlloc(size_t bytes) {
  void* p = nullptr;
  if (posix_memalign(&p, 256, bytes) != 0) return nullptr;  // cudaMalloc's alignment
  return static_cast<unsigned char*>(p);
}

}  // namespace

void setLastError(cudaError_t e, const std::string& detail) { fail(e, detail); }

bool skipWork() {
  static const bool skip = [] {
    const char* e = std::getenv("MESHTRAIN_CUDA_EMU_SKIP_WORK");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return skip;
}

void setPendingError(cudaError_t e, const std::string& detail) {
  State& s = st();
  std::lock_guard<std::mutex> lock(s.mu);
  int dev = tDevice;
  if (!validDevice(dev) || s.pending[size_t(dev)] != cudaSuccess) return;  // the first error wins
  s.pending[size_t(dev)] = e;
  s.pendingDetail[size_t(dev)] = detail;
  if (std::getenv("MESHTRAIN_CUDA_EMU_VERBOSE")) std::fprintf(stderr, "cuda emu: %s\n", detail.c_str());
}

int currentDevice() { return tDevice; }

std::recursive_mutex& launchMutex() {
  static std::recursive_mutex m;
  return m;
}

size_t maxDynamicShared(const void* fn) {
  State& s = st();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.maxSmem.find(fn);
  return it == s.maxSmem.end() ? size_t(48) << 10 : it->second;
}

bool streamUsable(cudaStream_t s, int dev, std::string* why) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return true;
  State& x = st();
  std::lock_guard<std::mutex> lock(x.mu);
  auto* p = reinterpret_cast<Stream*>(s);
  if (!x.streams.count(p)) {
    *why = "stream " + hex(s) + " was never created or was destroyed";
    return false;
  }
  if (p->device != dev) {
    *why = "stream " + hex(s) + " belongs to cuda:" + std::to_string(p->device) + ", the current device is cuda:" + std::to_string(dev);
    return false;
  }
  return true;
}

std::string kernelPointerProblem(const void* p, int dev) {
  State& s = st();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = find(p);
  if (it == s.allocs.end()) return hex(p) + " is not device memory (host memory cannot be read by a kernel)";
  const Alloc& a = it->second;
  if (a.pinned) return "";
  if (a.cached) return hex(p) + " points into a freed (cached) block";
  if (a.device != dev) return hex(p) + " is memory of cuda:" + std::to_string(a.device) + " (the kernel runs on cuda:" + std::to_string(dev) + ")";
  if (uintptr_t(p) > it->first + a.bytes) return hex(p) + " is past the end of its allocation of " + std::to_string(a.bytes) + " bytes";
  return "";
}

std::string launchName(const LaunchInfo& li) {
  const char* file = std::strrchr(li.file, '/');
  return std::string("kernel ") + li.name + " (" + (file ? file + 1 : li.file) + ":" + std::to_string(li.line) + ")";
}

namespace {
// Scans every live allocation's guard bytes after `who` ran (a kernel, or a graph node).
void scanGuards(const std::string& who, bool library) {
  State& s = st();
  std::string damage;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.recent.push_back(who);
    if (s.recent.size() > 4) s.recent.pop_front();
    for (auto& [base, a] : s.allocs) {
      if (a.pinned || a.cached) continue;
      std::string d = guardDamage(base, a);
      if (d.empty()) continue;
      fillGuard(base, a);  // reported once
      if (damage.empty()) damage = d;
    }
  }
  // The reference cuBLASLt/cuDNN write device memory without a launch: their damage shows here.
  if (!damage.empty())
    setPendingError(cudaErrorIllegalAddress,
                    who + (library ? "" : " (or a cuBLASLt/cuDNN call since the previous kernel)") + " wrote out of bounds: " + damage);
}
}  // namespace

void checkGuards(const LaunchInfo& li) { scanGuards(replaying() ? replayWhere() : launchName(li), false); }
void checkGuardsAfter(const std::string& who) { scanGuards(who, true); }

bool pendingOn(int dev) {
  State& s = st();
  std::lock_guard<std::mutex> lock(s.mu);
  return validDevice(dev) && s.pending[size_t(dev)] != cudaSuccess;
}

namespace {
// A call that waits for all of `dev`'s work, or runs outside the captured order, while a stream
// of `dev` captures: refused as the device refuses it, every such capture invalidated.
cudaError_t refuseWhileCapturing(int dev, const std::string& call) {
  if (!anyCapture() || invalidateDeviceCaptures(dev, call) == 0) return cudaSuccess;
  return fail(cudaErrorStreamCaptureUnsupported, call + ": not permitted while a stream of cuda:" + std::to_string(dev) +
                                                     " captures (its capture is now invalidated; the device allows a synchronous "
                                                     "copy or memset only in relaxed mode, where it runs at once, before the captured work)");
}
}  // namespace

bool beginLaunch(const LaunchInfo& li, const void* const* ptrs, int nPtrs) {
  MT_EMU_COUNT_AS("cudaLaunchKernel");
  const dim3 g = li.grid, b = li.block;
  const auto name = [&] { return launchName(li); };  // built only for a message: launches are the hot path
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (!validDevice(tDevice)) {
    noDevice();
    return false;
  }
  if (g.x == 0 || g.y == 0 || g.z == 0 || b.x == 0 || b.y == 0 || b.z == 0 || threads > 1024 || b.z > 64 || g.y > 65535 ||
      g.z > 65535 || g.x > 2147483647u) {
    fail(cudaErrorInvalidConfiguration, name() + ": grid (" + std::to_string(g.x) + "," + std::to_string(g.y) + "," +
                                            std::to_string(g.z) + ") block (" + std::to_string(b.x) + "," +
                                            std::to_string(b.y) + "," + std::to_string(b.z) + ")");
    return false;
  }
  if (li.smem > maxDynamicShared(li.fn)) {
    fail(cudaErrorInvalidValue, name() + ": " + std::to_string(li.smem) + " bytes of dynamic shared memory, more than the " +
                                    std::to_string(maxDynamicShared(li.fn)) +
                                    " allowed (cudaFuncSetAttribute(MaxDynamicSharedMemorySize) raises it up to 227 KiB)");
    return false;
  }
  std::string why;
  if (!streamUsable(li.stream, tDevice, &why)) {
    fail(cudaErrorInvalidResourceHandle, name() + ": " + why);
    return false;
  }
  for (int i = 0; i < nPtrs; i++) {
    if (!ptrs[i]) continue;
    std::string p = kernelPointerProblem(ptrs[i], tDevice);
    if (!p.empty()) {
      // The device would fault while running the kernel: an execution error, not a launch error.
      setPendingError(cudaErrorIllegalAddress, name() + ": pointer argument " + std::to_string(i) + ": " + p);
      return false;
    }
  }
  return true;
}

void blockInUse(void* ptr, size_t bytes) {
  State& s = st();
  std::string d;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.allocs.find(uintptr_t(ptr));
    if (it == s.allocs.end() || bytes > it->second.capacity) return;
    Alloc& a = it->second;
    if (skipWork()) {
      a.cached = false;
      a.bytes = bytes;
      return;
    }
    if (a.cached) {
      const unsigned char* m = static_cast<const unsigned char*>(ptr);
      for (size_t i = 0; i < a.capacity && d.empty(); i++)
        if (m[i] != freedByte(uintptr_t(ptr) + i))
          d = "a freed block of " + std::to_string(a.capacity) + " bytes at " + hex(ptr) + " was written at offset " +
              std::to_string(i) + " while free (the last kernels: " + recentKernels() + ")";
    }
    a.cached = false;
    a.bytes = bytes;
    std::memset(ptr, kFreshByte, bytes);
    fillGuard(it->first, a);
  }
  if (!d.empty()) setPendingError(cudaErrorIllegalAddress, d);
}

void blockCached(void* ptr) {
  State& s = st();
  std::string d;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.allocs.find(uintptr_t(ptr));
    if (it == s.allocs.end()) return;
    Alloc& a = it->second;
    a.cached = true;
    if (skipWork()) return;
    d = guardDamage(it->first, a);
    a.bytes = a.capacity;
    fillPattern(uintptr_t(ptr), a.capacity, freedByte);
    fillGuard(it->first, a);
  }
  if (!d.empty()) setPendingError(cudaErrorIllegalAddress, "found when the block was freed: " + d + " (the last kernels: " + recentKernels() + ")");
}

}  // namespace emu
}  // namespace mt

using namespace mt::emu;

extern "C" {

// Uncounted twins of the entry points that other entry points call (defined below).
static cudaError_t memsetAsync(void* ptr, int value, size_t n, cudaStream_t s);
static cudaError_t streamCreate(cudaStream_t* s, unsigned flags);
static cudaError_t eventCreate(cudaEvent_t* e, unsigned flags);

cudaError_t cudaGetDeviceCount(int* count) {
  MT_EMU_COUNT();
  *count = st().devices;
  if (st().devices == 0) return fail(cudaErrorNoDevice, "MESHTRAIN_CUDA_EMU_DEVICES=0");
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  MT_EMU_COUNT();
  *device = tDevice;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  MT_EMU_COUNT();
  if (!validDevice(device)) return noDevice();
  tDevice = device;
  return cudaSuccess;
}
static cudaError_t getDeviceProperties(cudaDeviceProp* p, int device) {
  if (!validDevice(device)) return noDevice();
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "meshtrain emulated device (H100-like)");
  p->totalGlobalMem = st().capacity;
  p->sharedMemPerBlock = 48 << 10;
  p->sharedMemPerBlockOptin = 227 << 10;
  p->sharedMemPerMultiprocessor = 228 << 10;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->totalConstMem = 65536;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;
  p->l2CacheSize = 50 << 20;
  p->maxThreadsPerMultiProcessor = 2048;
  p->memoryBusWidth = 5120;
  p->pciBusID = device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  MT_EMU_COUNT();
  return getDeviceProperties(p, device);
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  MT_EMU_COUNT();
  cudaDeviceProp p;
  if (cudaError_t e = getDeviceProperties(&p, device)) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = int(p.sharedMemPerBlock); break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = int(p.sharedMemPerBlockOptin); break;
    default: return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute " + std::to_string(int(attr)) + " is not emulated");
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  MT_EMU_COUNT();
  if (cudaError_t e = refuseWhileCapturing(tDevice, "cudaDeviceSynchronize")) return e;
  return takePending(tDevice);
}
cudaError_t cudaDeviceCanAccessPeer(int* can, int device, int peer) {
  MT_EMU_COUNT();
  if (!validDevice(device) || !validDevice(peer)) return noDevice();
  *can = device != peer;
  return cudaSuccess;
}
cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned) {
  MT_EMU_COUNT();
  return validDevice(peer) ? cudaSuccess : noDevice();
}
cudaError_t cudaDriverGetVersion(int* v) {
  MT_EMU_COUNT();
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  MT_EMU_COUNT();
  *v = 13000;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  MT_EMU_COUNT();
  if (!validDevice(tDevice)) return noDevice();
  State& s = st();
  std::lock_guard<std::mutex> lock(s.mu);
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  if (s.used[size_t(tDevice)] + bytes > s.capacity)
    return fail(cudaErrorMemoryAllocation, "cudaMalloc(" + std::to_string(bytes) + "): the emulated cuda:" + std::to_string(tDevice) +
                                               " has " + std::to_string(s.capacity - s.used[size_t(tDevice)]) + " bytes free (MESHTRAIN_CUDA_EMU_MEMORY)");
  unsigned char* m = alignedAlloc(bytes + kGuard);
  if (!m) return fail(cudaErrorMemoryAllocation, "cudaMalloc: host memory exhausted");
  Alloc a;
  a.bytes = a.capacity = bytes;
  a.device = tDevice;
  // Skipping work, the memory stays untouched (and out of the resident set) until a copy writes it.
  if (!skipWork()) {
    std::memset(m, kFreshByte, bytes);
    fillGuard(uintptr_t(m), a);
  }
  s.allocs[uintptr_t(m)] = a;
  s.used[size_t(tDevice)] += bytes;
  *ptr = m;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  MT_EMU_COUNT();
  if (!ptr) return cudaSuccess;
  State& s = st();
  std::string damage;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.allocs.find(uintptr_t(ptr));
    if (it == s.allocs.end() || it->second.pinned)
      return fail(cudaErrorInvalidValue, "cudaFree(" + hex(ptr) + "): not the start of a live device allocation");
    if (!skipWork()) damage = guardDamage(it->first, it->second);
    s.used[size_t(it->second.device)] -= it->second.capacity;
    s.allocs.erase(it);
    std::free(ptr);
  }
  if (!damage.empty()) setPendingError(cudaErrorIllegalAddress, "found by cudaFree: " + damage + " (the last kernels: " + recentKernels() + ")");
  return takePending(tDevice);
}

static cudaError_t hostAlloc(void** ptr, size_t bytes, unsigned) {
  State& s = st();
  std::lock_guard<std::mutex> lock(s.mu);
  unsigned char* m = alignedAlloc(bytes + kGuard);
  if (!m) return fail(cudaErrorMemoryAllocation, "cudaHostAlloc(" + std::to_string(bytes) + ")");
  Alloc a;
  a.bytes = a.capacity = bytes;
  a.pinned = true;
  fillGuard(uintptr_t(m), a);
  s.allocs[uintptr_t(m)] = a;
  *ptr = m;
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned flags) {
  MT_EMU_COUNT();
  return hostAlloc(ptr, bytes, flags);
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  MT_EMU_COUNT();
  return hostAlloc(ptr, bytes, 0);
}
cudaError_t cudaFreeHost(void* ptr) {
  MT_EMU_COUNT();
  if (!ptr) return cudaSuccess;
  State& s = st();
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.allocs.find(uintptr_t(ptr));
  if (it == s.allocs.end() || !it->second.pinned)
    return fail(cudaErrorInvalidValue, "cudaFreeHost(" + hex(ptr) + "): not memory from cudaHostAlloc/cudaMallocHost");
  std::string damage = guardDamage(it->first, it->second);
  s.allocs.erase(it);
  std::free(ptr);
  if (!damage.empty()) return fail(cudaErrorIllegalAddress, "cudaFreeHost: " + damage);
  return cudaSuccess;
}
cudaError_t cudaHostRegister(void* ptr, size_t bytes, unsigned) {
  MT_EMU_COUNT();
  if (!ptr || bytes == 0) return fail(cudaErrorInvalidValue, "cudaHostRegister: null or empty range");
  return cudaSuccess;
}
cudaError_t cudaHostUnregister(void*) {
  MT_EMU_COUNT();
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes) {
  MT_EMU_COUNT();
  if (!validDevice(tDevice)) return noDevice();
  State& s = st();
  std::lock_guard<std::mutex> lock(s.mu);
  *totalBytes = s.capacity;
  *freeBytes = s.capacity - s.used[size_t(tDevice)];
  return cudaSuccess;
}

namespace {
// Why a copy under `kind` is not allowed (empty when it is): device sides must lie in live
// allocations of their devices. Resolves cudaMemcpyDefault in *kind. Caller holds st().mu.
std::string copyProblem(void* dst, const void* src, size_t n, cudaMemcpyKind* kind, int dstDev, int srcDev) {
  if (*kind == cudaMemcpyDefault) {
    bool sd = isDevice(src), dd = isDevice(dst);
    *kind = sd ? (dd ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost) : (dd ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
  }
  const bool srcOnDevice = *kind == cudaMemcpyDeviceToHost || *kind == cudaMemcpyDeviceToDevice;
  const bool dstOnDevice = *kind == cudaMemcpyHostToDevice || *kind == cudaMemcpyDeviceToDevice;
  std::string problem;
  if (srcOnDevice) problem = deviceRangeProblem(src, n, srcDev, "source");
  else if (isDevice(src)) problem = "source " + hex(src) + " is device memory but the copy's kind says host";
  if (problem.empty()) {
    if (dstOnDevice) problem = deviceRangeProblem(dst, n, dstDev, "destination");
    else if (isDevice(dst)) problem = "destination " + hex(dst) + " is device memory but the copy's kind says host";
  }
  return problem;
}

// Checks both sides of a copy against `kind` and copies.
cudaError_t copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind, const char* what, int dstDev, int srcDev) {
  if (n == 0) return cudaSuccess;
  State& s = st();
  std::string problem;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    problem = copyProblem(dst, src, n, &kind, dstDev, srcDev);
  }
  const bool srcOnDevice = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  const bool dstOnDevice = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  if (!problem.empty()) return fail(cudaErrorInvalidValue, std::string(what) + " of " + std::to_string(n) + " bytes: " + problem);
  // Skipping work, device values are garbage; the host reads zeros instead, so what it decides from
  // them (index-check flags, the overflow flag, norms) takes the common path of a healthy step.
  if (skipWork() && srcOnDevice && !dstOnDevice) std::memset(dst, 0, n);
  else std::memmove(dst, src, n);
  return cudaSuccess;
}

// Captured copies and memsets (graph.cc): their arguments by value, checked again at each replay
// against the allocations live then; a bad range is an execution error naming the graph node.
struct CopyNode {
  void* dst;
  const void* src;
  size_t n;
  int dev;
  static void run(void* c) {
    auto* x = static_cast<CopyNode*>(c);
    std::string problem;
    {
      std::lock_guard<std::mutex> lock(st().mu);
      cudaMemcpyKind kind = cudaMemcpyDeviceToDevice;
      problem = copyProblem(x->dst, x->src, x->n, &kind, x->dev, x->dev);
    }
    if (!problem.empty()) return setPendingError(cudaErrorIllegalAddress, replayWhere() + ": " + problem);
    std::memmove(x->dst, x->src, x->n);
  }
  static void drop(void* c) { delete static_cast<CopyNode*>(c); }
};
struct MemsetNode {
  void* ptr;
  int value;
  size_t n;
  int dev;
  static void run(void* c) {
    auto* x = static_cast<MemsetNode*>(c);
    std::string problem;
    {
      std::lock_guard<std::mutex> lock(st().mu);
      problem = deviceRangeProblem(x->ptr, x->n, x->dev, "cudaMemsetAsync");
    }
    if (!problem.empty()) return setPendingError(cudaErrorIllegalAddress, replayWhere() + ": " + problem);
    std::memset(x->ptr, x->value, x->n);
  }
  static void drop(void* c) { delete static_cast<MemsetNode*>(c); }
};

// Records a copy on capturing stream `s` (Active or Invalidated), or None: run it now. Only
// device-to-device copies are captured: a host side would be read or written at each replay.
cudaStreamCaptureStatus captureCopy(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t s, cudaError_t* err) {
  if (!anyCapture() || captureStatus(s) == cudaStreamCaptureStatusNone) return cudaStreamCaptureStatusNone;
  std::string problem;
  {
    std::lock_guard<std::mutex> lock(st().mu);
    problem = copyProblem(dst, src, n, &kind, tDevice, tDevice);
  }
  if (kind != cudaMemcpyDeviceToDevice) {
    const std::string why = "cudaMemcpyAsync of " + std::to_string(n) + " bytes with a host side";
    invalidateCapture(s, why);
    *err = fail(cudaErrorStreamCaptureUnsupported, why + " on capturing stream " + hex(s) +
                                                       ": the graph would read or write host memory at each replay (not captured; the capture is now invalidated)");
    return cudaStreamCaptureStatusInvalidated;
  }
  if (!problem.empty()) {
    *err = fail(cudaErrorInvalidValue, "cudaMemcpyAsync of " + std::to_string(n) + " bytes: " + problem);
    return cudaStreamCaptureStatusActive;
  }
  auto* node = new CopyNode{dst, src, n, tDevice};
  cudaStreamCaptureStatus c = recordNode(s, "cudaMemcpyAsync of " + std::to_string(n) + " bytes device to device, " + hex(src) + " to " + hex(dst),
                                         &CopyNode::run, node, &CopyNode::drop);
  if (c == cudaStreamCaptureStatusNone) delete node;
  *err = c == cudaStreamCaptureStatusInvalidated ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
  return c;
}

// The capture `s` is in refuses a call that would wait for its work (it is not scheduled):
// cudaErrorStreamCaptureUnsupported, the capture invalidated; cudaSuccess when `s` does not capture.
cudaError_t refuseOnCapturing(cudaStream_t s, const char* call) {
  if (!anyCapture() || captureStatus(s) == cudaStreamCaptureStatusNone) return cudaSuccess;
  invalidateCapture(s, std::string(call) + " on it");
  return fail(cudaErrorStreamCaptureUnsupported, std::string(call) + ": stream " + hex(s) +
                                                     " is capturing: its work is recorded, not scheduled, so it cannot be waited for or "
                                                     "queried (the capture is now invalidated)");
}
}  // namespace

cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  MT_EMU_COUNT();
  if (cudaError_t e = refuseWhileCapturing(tDevice, "cudaMemcpy (synchronous)")) return e;
  if (cudaError_t e = takePending(tDevice)) return e;
  return copy(dst, src, n, kind, "cudaMemcpy", tDevice, tDevice);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
  MT_EMU_COUNT();
  std::string why;
  if (!streamUsable(s, tDevice, &why)) return fail(cudaErrorInvalidResourceHandle, "cudaMemcpyAsync: " + why);
  cudaError_t captured = cudaSuccess;
  if (n > 0 && captureCopy(dst, src, n, kind, s, &captured) != cudaStreamCaptureStatusNone) return captured;
  return copy(dst, src, n, kind, "cudaMemcpyAsync", tDevice, tDevice);
}
cudaError_t cudaMemcpyPeer(void* dst, int dstDevice, const void* src, int srcDevice, size_t n) {
  MT_EMU_COUNT();
  if (!validDevice(dstDevice) || !validDevice(srcDevice)) return noDevice();
  return copy(dst, src, n, cudaMemcpyDeviceToDevice, "cudaMemcpyPeer", dstDevice, srcDevice);
}
cudaError_t cudaMemcpyPeerAsync(void* dst, int dstDevice, const void* src, int srcDevice, size_t n, cudaStream_t s) {
  MT_EMU_COUNT();
  if (!validDevice(dstDevice) || !validDevice(srcDevice)) return noDevice();
  std::string why;
  if (!streamUsable(s, tDevice, &why)) return fail(cudaErrorInvalidResourceHandle, "cudaMemcpyPeerAsync: " + why);
  if (anyCapture() && captureStatus(s) != cudaStreamCaptureStatusNone) {
    invalidateCapture(s, "cudaMemcpyPeerAsync");
    return fail(cudaErrorStreamCaptureUnsupported, "cudaMemcpyPeerAsync on capturing stream " + hex(s) + ": not emulated (the capture is now invalidated)");
  }
  return copy(dst, src, n, cudaMemcpyDeviceToDevice, "cudaMemcpyPeerAsync", dstDevice, srcDevice);
}
cudaError_t cudaMemset(void* ptr, int value, size_t n) {
  MT_EMU_COUNT();
  if (cudaError_t e = refuseWhileCapturing(tDevice, "cudaMemset (synchronous)")) return e;
  return memsetAsync(ptr, value, n, nullptr);
}
static cudaError_t memsetAsync(void* ptr, int value, size_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  std::string why;
  if (!streamUsable(s, tDevice, &why)) return fail(cudaErrorInvalidResourceHandle, "cudaMemsetAsync: " + why);
  {
    std::lock_guard<std::mutex> lock(st().mu);
    why = deviceRangeProblem(ptr, n, tDevice, "cudaMemsetAsync");
  }
  if (!why.empty()) return fail(cudaErrorInvalidValue, why);
  if (anyCapture() && captureStatus(s) != cudaStreamCaptureStatusNone) {
    auto* node = new MemsetNode{ptr, value, n, tDevice};
    cudaStreamCaptureStatus c = recordNode(s, "cudaMemsetAsync of " + std::to_string(n) + " bytes at " + hex(ptr) + " to " + std::to_string(value),
                                           &MemsetNode::run, node, &MemsetNode::drop);
    if (c == cudaStreamCaptureStatusActive) return cudaSuccess;
    if (c == cudaStreamCaptureStatusInvalidated) return cudaErrorStreamCaptureInvalidated;
    delete node;  // the capture ended in between
  }
  std::memset(ptr, value, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t n, cudaStream_t s) {
  MT_EMU_COUNT();
  return memsetAsync(ptr, value, n, s);
}

cudaError_t cudaStreamCreate(cudaStream_t* s) {
  MT_EMU_COUNT();
  return streamCreate(s, 0);
}
static cudaError_t streamCreate(cudaStream_t* s, unsigned) {
  if (!validDevice(tDevice)) return noDevice();
  auto* p = new Stream{tDevice};
  std::lock_guard<std::mutex> lock(st().mu);
  st().streams.insert(p);
  *s = reinterpret_cast<cudaStream_t>(p);
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  MT_EMU_COUNT();
  return streamCreate(s, flags);
}
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* s, unsigned flags, int) {
  MT_EMU_COUNT();
  return streamCreate(s, flags);
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  MT_EMU_COUNT();
  if (anyCapture() && captureStatus(s) != cudaStreamCaptureStatusNone)
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamDestroy: stream " + hex(s) + " is capturing (end the capture first; not destroyed)");
  std::lock_guard<std::mutex> lock(st().mu);
  auto* p = reinterpret_cast<Stream*>(s);
  if (!st().streams.erase(p)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: unknown stream " + hex(s));
  delete p;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  MT_EMU_COUNT();
  if (cudaError_t e = refuseOnCapturing(s, "cudaStreamSynchronize")) return e;
  std::string why;
  if (!streamUsable(s, tDevice, &why)) {
    // A stream of another device may be synchronized; only unknown handles are errors.
    int dev = -1;
    {
      std::lock_guard<std::mutex> lock(st().mu);
      if (st().streams.count(reinterpret_cast<Stream*>(s))) dev = reinterpret_cast<Stream*>(s)->device;
    }
    if (dev < 0) return fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: " + why);
    return takePending(dev);
  }
  return takePending(tDevice);
}
cudaError_t cudaStreamQuery(cudaStream_t s) {
  MT_EMU_COUNT();
  return refuseOnCapturing(s, "cudaStreamQuery");
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  MT_EMU_COUNT();
  uint64_t eventCapture = 0;
  {
    std::lock_guard<std::mutex> lock(st().mu);
    if (!st().events.count(reinterpret_cast<Event*>(e))) return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: unknown event " + hex(e));
    if (s && s != cudaStreamLegacy && s != cudaStreamPerThread && !st().streams.count(reinterpret_cast<Stream*>(s)))
      return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: unknown stream " + hex(s));
    eventCapture = reinterpret_cast<Event*>(e)->captureId;
  }
  if (!anyCapture()) return cudaSuccess;
  const uint64_t streamCapture = captureIdOf(s);
  if (!captureOpen(eventCapture)) eventCapture = 0;  // recorded outside any open capture
  if (streamCapture == 0 && eventCapture == 0) return cudaSuccess;
  if (streamCapture == eventCapture) {  // ordering inside one capture: the emulator records in issue order
    if (captureStatus(s) == cudaStreamCaptureStatusInvalidated)
      return fail(cudaErrorStreamCaptureInvalidated, "cudaStreamWaitEvent: the capture on stream " + hex(s) + " was invalidated earlier");
    return cudaSuccess;
  }
  if (streamCapture == 0) {
    invalidateCaptureId(eventCapture, "cudaStreamWaitEvent of another stream on an event it recorded");
    return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamWaitEvent: non-capturing stream " + hex(s) + " waits for event " + hex(e) +
                                                       " recorded in a capturing stream: a cross-stream fork (the waiting stream joining the "
                                                       "capture) is not emulated (that capture is now invalidated)");
  }
  if (eventCapture == 0) {
    invalidateCaptureId(streamCapture, "cudaStreamWaitEvent on an event recorded outside the capture");
    return fail(cudaErrorStreamCaptureIsolation, "cudaStreamWaitEvent: capturing stream " + hex(s) + " waits for event " + hex(e) +
                                                     ", which was not recorded in its capture: a dependency across the capture boundary "
                                                     "(cudaEventWaitExternal is not emulated; the capture is now invalidated)");
  }
  invalidateCaptureId(streamCapture, "cudaStreamWaitEvent merging two captures");
  invalidateCaptureId(eventCapture, "cudaStreamWaitEvent merging two captures");
  return fail(cudaErrorStreamCaptureMerge, "cudaStreamWaitEvent: capturing stream " + hex(s) + " waits for event " + hex(e) +
                                               " of another capture: two captures would merge (both are now invalidated)");
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  MT_EMU_COUNT();
  return eventCreate(e, 0);
}
static cudaError_t eventCreate(cudaEvent_t* e, unsigned) {
  auto* p = new Event{tDevice, {}};
  std::lock_guard<std::mutex> lock(st().mu);
  st().events.insert(p);
  *e = reinterpret_cast<cudaEvent_t>(p);
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
  MT_EMU_COUNT();
  return eventCreate(e, flags);
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  MT_EMU_COUNT();
  std::string why;
  if (!streamUsable(s, tDevice, &why)) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: " + why);
  // In a capture the record only marks a point of the graph (no node, as on the device).
  const uint64_t capture = captureIdOf(s);
  if (capture && captureStatus(s) == cudaStreamCaptureStatusInvalidated)
    return fail(cudaErrorStreamCaptureInvalidated, "cudaEventRecord: the capture on stream " + hex(s) + " was invalidated earlier");
  std::lock_guard<std::mutex> lock(st().mu);
  auto* p = reinterpret_cast<Event*>(e);
  if (!st().events.count(p)) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: unknown event " + hex(e));
  p->captureId = capture;
  if (capture) return cudaSuccess;
  p->at = std::chrono::steady_clock::now();
  p->recorded = true;
  return cudaSuccess;
}

namespace {
// An event last recorded in a capture that is still open: not scheduled, so it cannot be waited
// for or queried (cudaErrorCapturedEvent, the capture invalidated). cudaSuccess otherwise.
cudaError_t refuseCapturedEvent(cudaEvent_t e, uint64_t capture, const char* call) {
  if (!captureOpen(capture)) return cudaSuccess;
  invalidateCaptureId(capture, std::string(call) + " on an event recorded in it");
  return fail(cudaErrorCapturedEvent, std::string(call) + ": event " + hex(e) +
                                          " was last recorded in a capturing stream (the capture is now invalidated)");
}
uint64_t eventCaptureId(cudaEvent_t e) {
  std::lock_guard<std::mutex> lock(st().mu);
  auto* p = reinterpret_cast<Event*>(e);
  return st().events.count(p) ? p->captureId : 0;
}
}  // namespace

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  MT_EMU_COUNT();
  if (anyCapture())
    if (cudaError_t r = refuseCapturedEvent(e, eventCaptureId(e), "cudaEventSynchronize")) return r;
  int dev = -1;
  {
    std::lock_guard<std::mutex> lock(st().mu);
    if (!st().events.count(reinterpret_cast<Event*>(e))) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: unknown event");
    dev = reinterpret_cast<Event*>(e)->device;
  }
  return takePending(dev);
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  MT_EMU_COUNT();
  if (anyCapture()) return refuseCapturedEvent(e, eventCaptureId(e), "cudaEventQuery");
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  MT_EMU_COUNT();
  // Refused, but unlike a wait on such an event the capture goes on (the driver's codes on the H200, stop 19).
  if (anyCapture())
    for (cudaEvent_t e : {start, end})
      if (captureOpen(eventCaptureId(e)))
        return fail(cudaErrorCapturedEvent, "cudaEventElapsedTime: event " + hex(e) + " was last recorded in a capturing stream");
  std::lock_guard<std::mutex> lock(st().mu);
  auto *a = reinterpret_cast<Event*>(start), *b = reinterpret_cast<Event*>(end);
  if (!st().events.count(a) || !st().events.count(b)) return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: unknown event");
  // Recorded last inside a (now ended) capture: the graph's record has no time of its own.
  if (a->captureId || b->captureId)
    return fail(cudaErrorCapturedEvent, "cudaEventElapsedTime: an event was last recorded in a capturing stream (time graph replays with events recorded outside the capture)");
  if (!a->recorded || !b->recorded) return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event was never recorded");
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  MT_EMU_COUNT();
  std::lock_guard<std::mutex> lock(st().mu);
  auto* p = reinterpret_cast<Event*>(e);
  if (!st().events.erase(p)) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: unknown event " + hex(e));
  delete p;
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  MT_EMU_COUNT();
  cudaError_t e = tLast;
  tLast = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() {
  MT_EMU_COUNT();
  return tLast;
}

const char* cudaGetErrorName(cudaError_t e) {
  MT_EMU_COUNT();
  switch (e) {
#define MT_EMU_NAME(x) \
  case x: return #x;
    MT_EMU_NAME(cudaSuccess)
    MT_EMU_NAME(cudaErrorInvalidValue)
    MT_EMU_NAME(cudaErrorMemoryAllocation)
    MT_EMU_NAME(cudaErrorInitializationError)
    MT_EMU_NAME(cudaErrorInvalidConfiguration)
    MT_EMU_NAME(cudaErrorInvalidDevicePointer)
    MT_EMU_NAME(cudaErrorInvalidMemcpyDirection)
    MT_EMU_NAME(cudaErrorInsufficientDriver)
    MT_EMU_NAME(cudaErrorInvalidDeviceFunction)
    MT_EMU_NAME(cudaErrorNoDevice)
    MT_EMU_NAME(cudaErrorInvalidDevice)
    MT_EMU_NAME(cudaErrorInvalidResourceHandle)
    MT_EMU_NAME(cudaErrorIllegalState)
    MT_EMU_NAME(cudaErrorNotReady)
    MT_EMU_NAME(cudaErrorIllegalAddress)
    MT_EMU_NAME(cudaErrorLaunchOutOfResources)
    MT_EMU_NAME(cudaErrorLaunchFailure)
    MT_EMU_NAME(cudaErrorNotSupported)
    MT_EMU_NAME(cudaErrorStreamCaptureUnsupported)
    MT_EMU_NAME(cudaErrorStreamCaptureInvalidated)
    MT_EMU_NAME(cudaErrorStreamCaptureMerge)
    MT_EMU_NAME(cudaErrorStreamCaptureUnmatched)
    MT_EMU_NAME(cudaErrorStreamCaptureUnjoined)
    MT_EMU_NAME(cudaErrorStreamCaptureIsolation)
    MT_EMU_NAME(cudaErrorStreamCaptureImplicit)
    MT_EMU_NAME(cudaErrorCapturedEvent)
    MT_EMU_NAME(cudaErrorStreamCaptureWrongThread)
    MT_EMU_NAME(cudaErrorUnknown)
#undef MT_EMU_NAME
  }
  return "cudaErrorUnknown";
}

// The device's message, plus what the emulator found for the error this thread got last.
const char* cudaGetErrorString(cudaError_t e) {
  MT_EMU_COUNT();
  const char* base = "unknown error";
  switch (e) {
    case cudaSuccess: base = "no error"; break;
    case cudaErrorInvalidValue: base = "invalid argument"; break;
    case cudaErrorMemoryAllocation: base = "out of memory"; break;
    case cudaErrorInvalidConfiguration: base = "invalid configuration argument"; break;
    case cudaErrorNoDevice: base = "no CUDA-capable device is detected"; break;
    case cudaErrorInvalidDevice: base = "invalid device ordinal"; break;
    case cudaErrorInvalidResourceHandle: base = "invalid resource handle"; break;
    case cudaErrorIllegalAddress: base = "an illegal memory access was encountered"; break;
    case cudaErrorLaunchFailure: base = "unspecified launch failure"; break;
    case cudaErrorNotSupported: base = "operation not supported"; break;
    case cudaErrorIllegalState: base = "the resource is not in a valid state for the operation"; break;
    case cudaErrorStreamCaptureUnsupported: base = "operation not permitted when stream is capturing"; break;
    case cudaErrorStreamCaptureInvalidated: base = "operation failed due to a previous error during capture"; break;
    case cudaErrorStreamCaptureMerge: base = "operation would result in a merge of separate capture sequences"; break;
    case cudaErrorStreamCaptureIsolation: base = "dependency created on uncaptured work in another stream"; break;
    case cudaErrorStreamCaptureImplicit: base = "operation would make the legacy stream depend on a capturing blocking stream"; break;
    case cudaErrorCapturedEvent: base = "operation not permitted on an event last recorded in a capturing stream"; break;
    default: break;
  }
  tErrorString = base;
  if (e != cudaSuccess && e == tDetailCode && !tDetail.empty()) tErrorString += " [cuda emu: " + tDetail + "]";
  return tErrorString.c_str();
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  MT_EMU_COUNT();
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value > (227 << 10))
      return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute: " + std::to_string(value) + " bytes of dynamic shared memory (at most 232448)");
    std::lock_guard<std::mutex> lock(st().mu);
    st().maxSmem[func] = size_t(value);
  }
  return cudaSuccess;
}

}  // extern "C"
#endif
