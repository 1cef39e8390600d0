// The emulated device's launcher (test tool): a grid's blocks run one after another; a block's
// threads are fibers on the calling thread, started in thread order and switched only
// where a thread must wait for others (__syncthreads, warp collectives). A wait that can never
// end (a barrier some threads skip, a shuffle naming an exited lane) is reported as a deadlock
// instead of hanging.
#ifdef MESHTRAIN_CUDA_EMU
#include <sys/mman.h>
#include <ucontext.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "cuda/emu/state.h"

namespace mt {
namespace emu {

thread_local const BlockCoords* tBlock = nullptr;
thread_local const ThreadCoords* tThread = nullptr;

namespace {

constexpr size_t kStackBytes = 256 << 10;
constexpr size_t kPage = 4096;

enum class Wait { None, Barrier, Warp };

// A fiber's saved context. On x86-64 a stack pointer and a 30-instruction switch (below): glibc's
// swapcontext also saves the signal mask, a system call per switch, which made barrier-heavy
// kernels (a switch per thread per barrier) several times slower.
#if defined(__x86_64__)
struct Context {
  void* sp = nullptr;
};
extern "C" void mt_emu_switch(void** save, void* to);
asm(R"(
.text
.p2align 4
.globl mt_emu_switch
.hidden mt_emu_switch
.type mt_emu_switch,@function
mt_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size mt_emu_switch,.-mt_emu_switch
)");
inline void switchContext(Context& from, Context& to) { mt_emu_switch(&from.sp, to.sp); }
// A frame that mt_emu_switch "returns" into `entry` from, on a fresh stack ending at `top`.
void prepareContext(Context& c, char* stack, size_t bytes, void (*entry)()) {
  auto* top = reinterpret_cast<uint64_t*>((reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15));
  uint64_t* sp = top - 9;
  sp[0] = 0x1f80u | (uint64_t(0x037f) << 32);  // default MXCSR, x87 control word
  for (int i = 1; i <= 6; i++) sp[i] = 0;       // r15 r14 r13 r12 rbx rbp
  sp[7] = reinterpret_cast<uint64_t>(entry);    // returned into with rsp = top - 8, as after a call
  sp[8] = 0;
  c.sp = sp;
}
#else
struct Context {
  ucontext_t uc;
};
inline void switchContext(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
void prepareContext(Context& c, char* stack, size_t bytes, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = bytes;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
#endif

struct Fiber {
  Context ctx;
  ThreadCoords coords;
  int linear = 0;
  bool started = false, done = false;
  unsigned parity = 0;  // which of the warp's two exchange buffers the next collective uses
  Wait wait = Wait::None;
  const char* site = nullptr;
  struct AsyncCopy {
    void* dst;
    const void* src;
    int bytes;
    unsigned group;
  };
  std::vector<AsyncCopy> asyncQueued;  // cp.async copies not yet landed, with their commit group
  unsigned asyncCommitted = 0;         // groups committed so far
};

struct WarpState {
  unsigned arrived = 0, exists = 0;
  // Per lane: how many collectives it completed. Two sub-warp groups (masks 0x0000ffff and
  // 0xffff0000) may be mid-collective at once; each lane waits only for its own group.
  unsigned completed[32] = {};
  uint64_t values[2][32];
};

struct BlockRun {
  const LaunchInfo* li;
  BlockCoords coords;
  std::vector<Fiber> fibers;
  WarpState warps[32];
  int live = 0, barArrived = 0;
  unsigned barGen = 0;
  const char* barSite = nullptr;
  bool progress = false, aborted = false;
  std::string fault;
  Context scheduler;
  void (*body)(void*);
  void* ctx;
  std::vector<unsigned char> dynamicSmem;
  std::vector<unsigned char> gathered;  // warpGather's slots: [warp][parity][lane][kGatherBytes], made on first use
  bool eagerAsync = false;              // cp.async copies land when issued (the warps schedules)
};

thread_local BlockRun* tRun = nullptr;
thread_local Fiber* tFiber = nullptr;

// Stacks are kept per OS thread and reused by every block; each has a guard page below it.
std::vector<char*>& stackPool() {
  static thread_local std::vector<char*> pool;
  return pool;
}
char* stackFor(size_t i) {
  auto& pool = stackPool();
  while (pool.size() <= i) {
    void* m = mmap(nullptr, kStackBytes + kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      std::fprintf(stderr, "cuda emu: cannot map a fiber stack\n");
      std::abort();
    }
    mprotect(m, kPage, PROT_NONE);
    pool.push_back(static_cast<char*>(m) + kPage);
  }
  return pool[i];
}

void yieldToScheduler() { switchContext(tFiber->ctx, tRun->scheduler); }

void releaseBarrierIfComplete(BlockRun& r) {
  if (r.barArrived > 0 && r.barArrived == r.live) {
    r.barArrived = 0;
    r.barGen++;
    r.progress = true;
  }
}

void fiberMain() {
  BlockRun& r = *tRun;
  r.body(r.ctx);
  Fiber& f = *tFiber;
  f.done = true;
  r.live--;
  r.warps[f.linear / 32].exists &= ~(1u << (f.linear % 32));
  r.progress = true;
  releaseBarrierIfComplete(r);
  yieldToScheduler();  // a finished fiber is never resumed
  std::abort();
}

std::string describeWaits(const BlockRun& r) {
  int barrier = 0, warp = 0;
  std::string sites;
  for (const Fiber& f : r.fibers) {
    if (f.done || f.wait == Wait::None) continue;
    if (f.wait == Wait::Barrier) barrier++;
    else warp++;
    if (sites.size() < 300 && f.site && sites.find(f.site) == std::string::npos) sites += std::string(" ") + f.site;
  }
  return std::to_string(r.live) + " live threads: " + std::to_string(barrier) + " waiting at __syncthreads, " +
         std::to_string(warp) + " at a warp collective (" + sites + " )";
}

std::string coordsOf(const Fiber& f, const BlockCoords& b) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", b.blockIdx.x, b.blockIdx.y, b.blockIdx.z,
                f.coords.threadIdx.x, f.coords.threadIdx.y, f.coords.threadIdx.z);
  return buf;
}

// Waits, switching to the other fibers, until `done()`; the scheduler detects when none can move.
template <typename F>
void waitUntil(Wait kind, const char* site, F&& done) {
  tFiber->wait = kind;
  tFiber->site = site;
  while (!done()) yieldToScheduler();
  tFiber->wait = Wait::None;
  tRun->progress = true;
}

void warpBarrier(unsigned mask, const char* what) {
  BlockRun& r = *tRun;
  Fiber& f = *tFiber;
  int lane = f.linear % 32;
  WarpState& w = r.warps[f.linear / 32];
  if (!(mask & (1u << lane))) kernelFault(std::string(what) + ": called by lane " + std::to_string(lane) + " which its mask 0x" +
                                          [&] { char b[16]; std::snprintf(b, sizeof b, "%08x", mask); return std::string(b); }() +
                                          " leaves out");
  const unsigned done = w.completed[lane];
  w.arrived |= 1u << lane;
  if ((w.arrived & mask) == mask) {
    w.arrived &= ~mask;
    for (int l = 0; l < 32; l++)
      if (mask & (1u << l)) w.completed[l]++;
    r.progress = true;
    return;
  }
  waitUntil(Wait::Warp, what, [&] { return w.completed[lane] != done; });
}

}  // namespace

void kernelFault(const std::string& what) {
  BlockRun& r = *tRun;
  r.fault = coordsOf(*tFiber, r.coords) + ": " + what;
  r.aborted = true;
  yieldToScheduler();
  std::abort();  // an aborted block's fibers are never resumed
}

void syncThreads(const char* site) {
  BlockRun& r = *tRun;
  if (r.barArrived == 0) r.barSite = site;
  else if (std::strcmp(site, r.barSite) != 0)
    kernelFault(std::string("__syncthreads at ") + site + " while other threads of the block wait at " + r.barSite +
                " (a barrier in divergent code)");
  r.barArrived++;
  unsigned gen = r.barGen;
  releaseBarrierIfComplete(r);
  if (r.barGen != gen) return;
  waitUntil(Wait::Barrier, site, [&] { return r.barGen != gen; });
}

void syncWarp(unsigned mask) { warpBarrier(mask, "__syncwarp"); }

uint64_t warpShuffle(unsigned mask, uint64_t value, int src, int width, const char* what) {
  BlockRun& r = *tRun;
  Fiber& f = *tFiber;
  if (width < 1 || width > 32 || (width & (width - 1))) kernelFault(std::string(what) + ": width " + std::to_string(width) + " is not a power of two up to 32");
  WarpState& w = r.warps[f.linear / 32];
  unsigned p = f.parity;
  f.parity ^= 1;
  w.values[p][f.linear % 32] = value;
  warpBarrier(mask, what);
  if (src < 0 || src > 31 || !(mask & (1u << src)))
    kernelFault(std::string(what) + ": lane " + std::to_string(f.linear % 32) + " reads lane " + std::to_string(src) +
                ", which is not in the mask (undefined on the device)");
  return w.values[p][src];
}

unsigned warpBallot(unsigned mask, bool pred) {
  BlockRun& r = *tRun;
  Fiber& f = *tFiber;
  WarpState& w = r.warps[f.linear / 32];
  unsigned p = f.parity;
  f.parity ^= 1;
  w.values[p][f.linear % 32] = pred;
  warpBarrier(mask, "__ballot_sync");
  unsigned out = 0;
  for (int l = 0; l < 32; l++)
    if ((mask & (1u << l)) && w.values[p][l]) out |= 1u << l;
  return out;
}

void warpGather(unsigned mask, const void* mine, int bytes, void* all, const char* what) {
  BlockRun& r = *tRun;
  Fiber& f = *tFiber;
  if (bytes < 1 || bytes > kGatherBytes)
    kernelFault(std::string(what) + ": gathers " + std::to_string(bytes) + " bytes per lane (1.." +
                std::to_string(kGatherBytes) + ")");
  constexpr size_t kLane = kGatherBytes, kParity = 32 * kLane, kWarp = 2 * kParity;
  if (r.gathered.empty()) r.gathered.resize(32 * kWarp);
  // Two parities as in warpShuffle: a lane can run one collective ahead, never two.
  unsigned char* slots = r.gathered.data() + (f.linear / 32) * kWarp + f.parity * kParity;
  f.parity ^= 1;
  std::memcpy(slots + (f.linear % 32) * kLane, mine, size_t(bytes));
  warpBarrier(mask, what);
  auto* out = static_cast<unsigned char*>(all);
  for (int l = 0; l < 32; l++)
    if (mask & (1u << l)) std::memcpy(out + l * bytes, slots + l * kLane, size_t(bytes));
}

void asyncCopy(void* dst, const void* src, int bytes) {
  if (tRun->eagerAsync) std::memcpy(dst, src, size_t(bytes));
  else tFiber->asyncQueued.push_back({dst, src, bytes, tFiber->asyncCommitted});
}

void asyncCommit() { tFiber->asyncCommitted++; }

void asyncWait(int pending) {
  Fiber& f = *tFiber;
  const unsigned upTo = f.asyncCommitted > unsigned(pending) ? f.asyncCommitted - unsigned(pending) : 0;
  size_t kept = 0;
  for (const Fiber::AsyncCopy& c : f.asyncQueued) {
    if (c.group < upTo) std::memcpy(c.dst, c.src, size_t(c.bytes));
    else f.asyncQueued[kept++] = c;
  }
  f.asyncQueued.resize(kept);
}

unsigned activeMask() { return tRun->warps[tFiber->linear / 32].exists; }

unsigned char* dynamicShared() { return tRun->dynamicSmem.data(); }

namespace {

// How a block's fibers take turns (MESHTRAIN_CUDA_EMU_SCHEDULE, read at each launch). `threads`
// (default): round robin over the threads, each to its next switch, so the warps move in lockstep
// from one warp collective to the next. That hides a missing __syncthreads wherever a collective
// separates a warp's last read of shared memory from another warp's write of it (a refill after
// the reads, write after read). `warps`: one warp at a time, until all of its threads wait at
// __syncthreads or are done, so a warp runs ahead to its next barrier before the next warp starts
// (and the warp that completes a barrier runs on past it); `warps-reverse` the same, last warp
// first. cp.async copies land at their wait under `threads` (the latest the device may: a read
// the wait does not cover sees old memory) and when issued under the warps schedules (the
// earliest: a refill by cp.async overwrites what a warp behind has yet to read). A race-free
// kernel gives the same bits under all three.
enum class Schedule { Threads, Warps, WarpsReverse };
bool scheduleOf(Schedule* out) {
  const char* e = std::getenv("MESHTRAIN_CUDA_EMU_SCHEDULE");
  if (!e || !*e || std::strcmp(e, "threads") == 0) *out = Schedule::Threads;
  else if (std::strcmp(e, "warps") == 0) *out = Schedule::Warps;
  else if (std::strcmp(e, "warps-reverse") == 0) *out = Schedule::WarpsReverse;
  else return false;
  return true;
}

// Runs fiber t (starting it the first time) until it switches back; true when it moved.
bool resume(BlockRun& r, unsigned t) {
  Fiber& f = r.fibers[t];
  if (f.done) return false;
  r.progress = false;
  tFiber = &f;
  tThread = &f.coords;
  if (!f.started) {
    prepareContext(f.ctx, stackFor(t), kStackBytes, fiberMain);
    f.started = true;
    r.progress = true;
  }
  switchContext(r.scheduler, f.ctx);
  return r.progress;
}

}  // namespace

void runGrid(const LaunchInfo& li, void (*body)(void*), void* ctx) {
  std::lock_guard<std::recursive_mutex> lock(launchMutex());
  const unsigned nThreads = li.block.x * li.block.y * li.block.z;
  BlockRun r;
  r.li = &li;
  r.body = body;
  r.ctx = ctx;
  r.fibers.resize(nThreads);
  r.coords.blockDim = li.block;
  r.coords.gridDim = li.grid;
  Schedule schedule = Schedule::Threads;
  const bool known = scheduleOf(&schedule);
  r.eagerAsync = schedule != Schedule::Threads;
  if (!known) {
    r.aborted = true;
    r.fault = std::string("MESHTRAIN_CUDA_EMU_SCHEDULE: unknown schedule '") + std::getenv("MESHTRAIN_CUDA_EMU_SCHEDULE") +
              "' (threads, warps or warps-reverse)";
  }
  const BlockRun* prevRun = tRun;
  Fiber* prevFiber = tFiber;
  const BlockCoords* prevBlock = tBlock;
  const ThreadCoords* prevThread = tThread;
  tRun = &r;
  tBlock = &r.coords;
  for (unsigned bz = 0; bz < li.grid.z && !r.aborted; bz++)
    for (unsigned by = 0; by < li.grid.y && !r.aborted; by++)
      for (unsigned bx = 0; bx < li.grid.x && !r.aborted; bx++) {
        r.coords.blockIdx = uint3{bx, by, bz};
        r.live = int(nThreads);
        r.barArrived = 0;
        r.barSite = nullptr;
        for (unsigned wi = 0; wi < (nThreads + 31) / 32; wi++) {
          r.warps[wi].arrived = 0;
          unsigned n = std::min(32u, nThreads - wi * 32);
          r.warps[wi].exists = n == 32 ? ~0u : (1u << n) - 1;
        }
        // Fresh dynamic shared memory holds NaN bytes, so a read before any write shows.
        r.dynamicSmem.assign(li.smem ? li.smem : 1, 0xff);
        for (unsigned t = 0; t < nThreads; t++) {
          Fiber& f = r.fibers[t];
          f.linear = int(t);
          f.coords.threadIdx = uint3{t % li.block.x, (t / li.block.x) % li.block.y, t / (li.block.x * li.block.y)};
          f.started = f.done = false;
          f.asyncQueued.clear();  // a block that ends with copies in flight discards them with its shared memory
          f.asyncCommitted = 0;
          f.parity = 0;
          f.wait = Wait::None;
        }
        while (r.live > 0) {
          bool moved = false;
          if (schedule == Schedule::Threads) {
            for (unsigned t = 0; t < nThreads && !r.aborted; t++) moved |= resume(r, t);
          } else {
            const unsigned nw = (nThreads + 31) / 32;
            for (unsigned k = 0; k < nw && !r.aborted; k++) {
              const unsigned w = schedule == Schedule::WarpsReverse ? nw - 1 - k : k;
              const unsigned end = std::min(nThreads, 32 * w + 32);
              for (bool again = true; again && !r.aborted;) {
                again = false;
                for (unsigned t = 32 * w; t < end && !r.aborted; t++) again |= resume(r, t);
                moved |= again;
              }
            }
          }
          if (r.aborted) break;
          if (!moved) {
            r.fault = "block (" + std::to_string(bx) + "," + std::to_string(by) + "," + std::to_string(bz) +
                      ") deadlocked: " + describeWaits(r);
            r.aborted = true;
          }
        }
      }
  tRun = const_cast<BlockRun*>(prevRun);
  tFiber = prevFiber;
  tBlock = prevBlock;
  tThread = prevThread;
  if (r.aborted) setPendingError(cudaErrorLaunchFailure, launchName(li) + ": " + r.fault);
  checkGuards(li);
}

}  // namespace emu
}  // namespace mt
#endif
