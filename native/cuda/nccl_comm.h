// NCCL communicators for CUDA tensors: one per process group, created without blocking, every
// collective on the device's communication stream, and a watchdog thread that aborts a
// communicator whose operation outlives its timeout or whose peer failed. Compiled in CUDA builds,
// the emulated-device build included (there only a test's stand-in libnccl can serve it: the
// emulator's events are always complete). `dev` is the CUDA ordinal.
#pragma once
#if defined(MESHTRAIN_CUDA)
#define MESHTRAIN_NCCL 1
#include <cstdint>
#include <string>

namespace mt {

// Why this process cannot use NCCL ("" when it can): no CUDA device, or libnccl missing.
std::string ncclUnavailableReason();
// A fresh ncclUniqueId (128 bytes) for rank 0 of a new communicator to publish.
std::string ncclNewUniqueId();

// Operation codes; the same numbers as the shm backend's (native/comm/layout.h).
enum NcclKind : int { kNcclAllReduce = 1, kNcclReduce = 2, kNcclReduceScatter = 3, kNcclAllGather = 4,
                      kNcclBroadcast = 5, kNcclBarrier = 6, kNcclSend = 8, kNcclRecv = 9 };

struct NcclOp {
  int kind = 0;
  int red = 0;    // 0 sum, 1 avg, 2 max, 3 min (shm's codes)
  int dtype = 0;  // meshtrain dtype code (tensor/dtype.h)
  int root = 0;   // root of reduce/broadcast, peer of send/recv (group rank)
  int64_t count = 0;  // elements: of the tensor; per rank for reduceScatter (output) and allGather (input)
  const void* in = nullptr;
  void* out = nullptr;
  bool async = false;
  std::string what;  // "allReduce(sum)", for messages
};

// Starts joining a new communicator: with `nonBlocking` and NCCL >= 2.14, ncclCommInitRankConfig
// with blocking = 0 returns at once and ncclCommPoll says when it is ready; otherwise the blocking
// ncclCommInitRank returns when all `size` ranks joined (and cannot be aborted).
int64_t ncclCommOpen(int dev, const std::string& uniqueId, int size, int rank, const std::string& name,
                     int64_t timeoutMs, bool blockingWait, bool nonBlocking);
// Starts ncclCommSplit of `parent` (every rank of the parent calls it; color >= 0), in the parent's
// mode: non-blocking parents return at once (poll the result), blocking ones when it is done.
int64_t ncclCommSplitOf(int64_t parent, int color, int key, int size, int rank, const std::string& name,
                        int64_t timeoutMs);
// 1 when the communicator from ncclCommOpen/ncclCommSplitOf is ready, 0 while NCCL is building it;
// on an NCCL error it aborts it (a failed split aborts the parent) and throws naming the call.
int ncclCommPoll(int64_t comm);
// Gives up on a communicator (a deadline passed, a peer died): aborts it (for a split in progress,
// the parent), forgets the handle and returns "nccl: <call> for <group> <reason>; ... aborted".
std::string ncclCommAbandon(int64_t comm, const std::string& reason);
// Queues an operation; returns its id (0 for a sync op, already ordered before later kernels).
int64_t ncclCommIssue(int64_t comm, const NcclOp& op);
bool ncclCommTest(int64_t comm, int64_t op);
void ncclCommWait(int64_t comm, int64_t op);
void ncclCommSetTimeout(int64_t comm, int64_t ms);
int ncclCommDevice(int64_t comm);
int ncclCommSize(int64_t comm);
// Waits for the outstanding operations (the watchdog still applies), then finalizes and destroys.
void ncclCommClose(int64_t comm);

}  // namespace mt
#endif
