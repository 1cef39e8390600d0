// NCCL communicators for CUDA tensors: one per process group, blocking initialization, every
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

// Joins a new communicator (blocks until all `size` ranks have called it with the same id).
int64_t ncclCommOpen(int dev, const std::string& uniqueId, int size, int rank, const std::string& name,
                     int64_t timeoutMs, bool blockingWait);
// ncclCommSplit of `parent` (every rank of the parent calls it); -1 where color is negative.
int64_t ncclCommSplitOf(int64_t parent, int color, int key, int size, int rank, const std::string& name,
                        int64_t timeoutMs);
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
