/*
 * A stand-in libnccl.so.2 for the emulated-device tests (test/unit/cuda_nccl_emu.test.ts): the
 * functions meshtrain declares, for a world of one rank over host memory (the emulator's device
 * memory is host memory). Every call is checked (dtype, op, root, stream, a live communicator)
 * and logged to $FAKE_NCCL_LOG, so the test sees the codes meshtrain passed. Two counts are
 * traps: an all-reduce of 777 elements blocks until the communicator is aborted (a stuck peer),
 * one of 778 elements succeeds but leaves an asynchronous error (a failed peer).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  char internal[128];
} Id;

typedef struct {
  int nranks, rank, asyncErr;
  volatile int aborted;
  int destroyed;
  int serial;
} Comm;

static int serials = 0;

static void say(const char* fmt, ...) {
  const char* path = getenv("FAKE_NCCL_LOG");
  if (!path) return;
  FILE* f = fopen(path, "a");
  if (!f) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
  fclose(f);
}

static size_t itemBytes(int dt) {
  switch (dt) {
    case 0: case 1: return 1;
    case 2: case 3: case 7: return 4;
    case 4: case 5: case 8: return 8;
    case 6: case 9: return 2;
  }
  return 0;
}

int ncclGetVersion(int* v) { *v = 22703; return 0; }

const char* ncclGetErrorString(int r) {
  switch (r) {
    case 0: return "no error";
    case 4: return "invalid argument (stand-in libnccl)";
    case 5: return "invalid usage (stand-in libnccl)";
    case 6: return "remote process exited or there was a network error (stand-in libnccl)";
  }
  return "unknown result (stand-in libnccl)";
}

int ncclGetUniqueId(Id* id) {
  memset(id->internal, 7, sizeof id->internal);
  return 0;
}

static Comm* newComm(void) {
  Comm* c = calloc(1, sizeof(Comm));
  c->nranks = 1;
  c->serial = ++serials;
  return c;
}

int ncclCommInitRank(Comm** out, int nranks, Id id, int rank) {
  if (nranks != 1 || rank != 0 || id.internal[0] != 7) return 4;  /* a world of one, our id */
  *out = newComm();
  say("init comm=%d", (*out)->serial);
  return 0;
}

int ncclCommSplit(Comm* p, int color, int key, Comm** out, void* config) {
  if (!p || p->aborted || p->destroyed || config != NULL) return 4;
  *out = color < 0 ? NULL : newComm();
  say("split parent=%d color=%d key=%d comm=%d", p->serial, color, key, *out ? (*out)->serial : 0);
  return 0;
}

int ncclCommGetAsyncError(Comm* c, int* e) {
  if (!c || c->destroyed) return 4;
  *e = c->asyncErr;
  return 0;
}

/* The memory stays: a late call from another thread must not touch freed memory. */
int ncclCommAbort(Comm* c) {
  c->aborted = 1;
  say("abort comm=%d", c->serial);
  return 0;
}
int ncclCommFinalize(Comm* c) {
  say("finalize comm=%d", c->serial);
  return c->aborted || c->destroyed ? 4 : 0;
}
int ncclCommDestroy(Comm* c) {
  say("destroy comm=%d", c->serial);
  if (c->destroyed) return 4;
  c->destroyed = 1;
  return 0;
}

static int checked(Comm* c, int dt, int op, void* stream) {
  if (!c || c->destroyed || c->aborted || !stream) return 4;
  if (!itemBytes(dt) || op < 0 || op > 4) return 4;
  if (op == 4 && dt <= 5) return 4; /* ncclAvg: floating types only */
  return 0;
}

static int trap(Comm* c, size_t n) {
  if (n == 777) {
    for (int i = 0; i < 2000 && !c->aborted; i++) usleep(5000);
    return c->aborted ? 6 : 0;
  }
  if (n == 778) c->asyncErr = 6;
  return 0;
}

int ncclAllReduce(const void* s, void* r, size_t n, int dt, int op, Comm* c, void* stream) {
  int e = checked(c, dt, op, stream);
  if (e) return e;
  say("allReduce comm=%d n=%zu dt=%d op=%d inplace=%d", c->serial, n, dt, op, s == r);
  if ((e = trap(c, n))) return e;
  if (s != r) memmove(r, s, n * itemBytes(dt));
  return 0;
}

int ncclReduce(const void* s, void* r, size_t n, int dt, int op, int root, Comm* c, void* stream) {
  int e = checked(c, dt, op, stream);
  if (e || root != 0 || !r) return e ? e : 4;
  say("reduce comm=%d n=%zu dt=%d op=%d root=%d", c->serial, n, dt, op, root);
  if (s != r) memmove(r, s, n * itemBytes(dt));
  return 0;
}

int ncclReduceScatter(const void* s, void* r, size_t n, int dt, int op, Comm* c, void* stream) {
  int e = checked(c, dt, op, stream);
  if (e) return e;
  say("reduceScatter comm=%d n=%zu dt=%d op=%d", c->serial, n, dt, op);
  if (s != r) memmove(r, s, n * itemBytes(dt));
  return 0;
}

int ncclAllGather(const void* s, void* r, size_t n, int dt, Comm* c, void* stream) {
  int e = checked(c, dt, 0, stream);
  if (e) return e;
  say("allGather comm=%d n=%zu dt=%d", c->serial, n, dt);
  if (s != r) memmove(r, s, n * itemBytes(dt));
  return 0;
}

int ncclBroadcast(const void* s, void* r, size_t n, int dt, int root, Comm* c, void* stream) {
  int e = checked(c, dt, 0, stream);
  if (e || root != 0) return e ? e : 4;
  say("broadcast comm=%d n=%zu dt=%d root=%d", c->serial, n, dt, root);
  if (s != r) memmove(r, s, n * itemBytes(dt));
  return 0;
}

/* A world of one has no peer: NCCL refuses a lone send or receive to itself. */
int ncclSend(const void* b, size_t n, int dt, int peer, Comm* c, void* stream) {
  say("send comm=%d n=%zu dt=%d peer=%d", c ? c->serial : 0, n, dt, peer);
  return 5;
}
int ncclRecv(void* b, size_t n, int dt, int peer, Comm* c, void* stream) {
  say("recv comm=%d n=%zu dt=%d peer=%d", c ? c->serial : 0, n, dt, peer);
  return 5;
}

static int depth = 0;
int ncclGroupStart(void) { depth++; return 0; }
int ncclGroupEnd(void) { return depth-- > 0 ? 0 : 5; }
