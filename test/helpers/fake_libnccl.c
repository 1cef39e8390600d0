/*
 * A stand-in libnccl.so.2 for the emulated-device tests (test/unit/cuda_nccl_emu*.test.ts): the
 * functions meshtrain declares, over host memory (the emulator's device memory is host memory;
 * every collective is a copy). Every call is checked (dtype, op, root, stream, a live
 * communicator, the config struct) and logged to $FAKE_NCCL_LOG, so the tests see the codes
 * meshtrain passed.
 *
 * Blocking communicators (ncclCommInitRank, or a config without blocking = 0) serve a world of
 * one. Non-blocking ones (ncclCommInitRankConfig with blocking = 0) follow NCCL's documented
 * semantics: creation, collectives and finalize return ncclInProgress, the state
 * (ncclCommGetAsyncError) turns to ncclSuccess when the work is done, and any other call before
 * that is refused (ncclInvalidUsage). Their init completes once every rank of the unique id has
 * called it (a rendezvous of files under $FAKE_NCCL_DIR, default /tmp), so real processes can
 * build one 2-rank communicator; a split completes once every parent rank has called it.
 *
 * Traps: an all-reduce of 777 elements never completes until the communicator is aborted (a
 * stuck peer; blocking: the call itself blocks), one of 779 the same but its abort then takes 2 s
 * (NCCL's abort waits for the device to drain behind a busy compute stream), one of 778 elements
 * leaves an asynchronous error (a failed peer). FAKE_NCCL_INIT / FAKE_NCCL_SPLIT = hang (in progress until aborted) or fail
 * (ncclRemoteError when done); FAKE_NCCL_EXIT_RANK=r with FAKE_NCCL_EXIT_AT=init|split makes rank
 * r's process exit inside that call (a peer dying mid-creation). Compiled with
 * -DFAKE_NCCL_2_13 it is an NCCL 2.13: no ncclCommInitRankConfig, ncclCommSplit or finalize.
 */
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  char internal[128];
} Id;

/* ncclConfig_t as NCCL 2.18 lays it out; NCCL copies min(size, its own) bytes. */
typedef struct {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
  int cgaClusterSize, minCTAs, maxCTAs;
  const char* netName;
  int splitShare;
} Config;

typedef struct Comm Comm;
struct Comm {
  int nranks, rank, asyncErr;
  volatile int aborted;
  int destroyed;
  int serial;
  int blocking;
  int state;               /* ncclCommGetAsyncError's answer: 0, 7 (in progress) or an error */
  int pendingKind;         /* what completes the in-progress state: 0 work, 1 init, 2 split, 3 stuck */
  char base[400];          /* this communicator's rendezvous name (from the unique id, or the parent's) */
  char dir[512];           /* the rendezvous of the creation in progress */
  int splits;              /* splits started, for the split rendezvous names */
  double errorAt;          /* the 778 trap: when the asynchronous error appears (ms) */
  int slowAbort;           /* the 779 trap: ncclCommAbort takes 2 s */
  Comm** splitOut;         /* where the split's child goes when it completes */
  int splitColor;
};

static int serials = 0;

static double nowMs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

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

static int knob(const char* name, const char* value) {
  const char* v = getenv(name);
  return v && strcmp(v, value) == 0;
}

static void maybeExit(const char* at, int rank) {
  const char* r = getenv("FAKE_NCCL_EXIT_RANK");
  if (r && knob("FAKE_NCCL_EXIT_AT", at) && atoi(r) == rank) {
    say("exit rank=%d at=%s", rank, at);
    _exit(9);
  }
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

#ifdef FAKE_NCCL_2_13
int ncclGetVersion(int* v) { *v = 21304; return 0; }
#else
int ncclGetVersion(int* v) { *v = 22703; return 0; }
#endif

const char* ncclGetErrorString(int r) {
  switch (r) {
    case 0: return "no error";
    case 4: return "invalid argument (stand-in libnccl)";
    case 5: return "invalid usage (stand-in libnccl)";
    case 6: return "remote process exited or there was a network error (stand-in libnccl)";
    case 7: return "NCCL operation in progress (stand-in libnccl)";
  }
  return "unknown result (stand-in libnccl)";
}

/* Byte 0 marks our ids; the rest tell jobs apart (the rendezvous directory's name). */
int ncclGetUniqueId(Id* id) {
  static unsigned counter = 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  memset(id->internal, 0, sizeof id->internal);
  id->internal[0] = 7;
  snprintf(id->internal + 1, sizeof id->internal - 1, "%x-%lx-%x", (unsigned)getpid(), (unsigned long)ts.tv_nsec, ++counter);
  return 0;
}

static Comm* newComm(int nranks, int rank, int blocking) {
  Comm* c = calloc(1, sizeof(Comm));
  c->nranks = nranks;
  c->rank = rank;
  c->blocking = blocking;
  c->serial = ++serials;
  return c;
}

static const char* baseDir(void) {
  const char* d = getenv("FAKE_NCCL_DIR");
  return d && *d ? d : "/tmp";
}

/* This rank arrives at rendezvous `dir` (writing its color); returns 0 on success. */
static int arrive(const char* dir, int rank, int color) {
  mkdir(dir, 0700);
  char path[600];
  snprintf(path, sizeof path, "%s/%d", dir, rank);
  FILE* f = fopen(path, "w");
  if (!f) return 4;
  fprintf(f, "%d\n", color);
  fclose(f);
  return 0;
}

/* How many of ranks 0..n-1 have arrived at `dir`; with `color` >= 0, how many of them share it. */
static int arrived(const char* dir, int n, int color, int* sameColor) {
  int count = 0, same = 0;
  for (int r = 0; r < n; r++) {
    char path[600];
    snprintf(path, sizeof path, "%s/%d", dir, r);
    FILE* f = fopen(path, "r");
    if (!f) continue;
    int c = -1;
    if (fscanf(f, "%d", &c) != 1) c = -1;
    fclose(f);
    count++;
    if (c == color) same++;
  }
  if (sameColor) *sameColor = same;
  return count;
}

/* Blocking = 0 only with a config made by NCCL_CONFIG_INITIALIZER (magic, size, version). */
static int readConfig(const Config* cfg, int* blocking) {
  *blocking = 1;
  if (!cfg) return 0;
  if (cfg->magic != 0xcafebeef || cfg->size < offsetof(Config, blocking) + sizeof(int) || cfg->version < 21400) return 4;
  say("config size=%zu version=%u blocking=%d undef=%d", cfg->size, cfg->version, cfg->blocking,
      cfg->size >= sizeof(Config) && cfg->cgaClusterSize == INT_MIN && cfg->minCTAs == INT_MIN &&
          cfg->maxCTAs == INT_MIN && cfg->netName == NULL && cfg->splitShare == INT_MIN);
  if (cfg->blocking != INT_MIN && cfg->blocking != 0 && cfg->blocking != 1) return 4;
  *blocking = cfg->blocking != 0;
  return 0;
}

int ncclCommInitRank(Comm** out, int nranks, Id id, int rank) {
  if (nranks != 1 || rank != 0 || id.internal[0] != 7) return 4; /* a world of one, our id */
  *out = newComm(1, 0, 1);
  say("init comm=%d nranks=1 rank=0 blocking=1", (*out)->serial);
  return 0;
}

#ifndef FAKE_NCCL_2_13
int ncclCommInitRankConfig(Comm** out, int nranks, Id id, int rank, Config* cfg) {
  int blocking, e = readConfig(cfg, &blocking);
  if (e) return e;
  if (blocking) return ncclCommInitRank(out, nranks, id, rank);
  if (nranks < 1 || rank < 0 || rank >= nranks || id.internal[0] != 7) return 4;
  maybeExit("init", rank);
  Comm* c = newComm(nranks, rank, 0);
  snprintf(c->base, sizeof c->base, "%s/fake-nccl-%.100s", baseDir(), id.internal + 1);
  snprintf(c->dir, sizeof c->dir, "%s", c->base);
  if (arrive(c->dir, rank, 0)) return 2;
  c->state = 7;
  c->pendingKind = knob("FAKE_NCCL_INIT", "hang") ? 3 : 1;
  *out = c; /* the handle exists at once (it can be polled and aborted) */
  say("init comm=%d nranks=%d rank=%d blocking=0", c->serial, nranks, rank);
  return 7;
}
#endif

/* Advances an in-progress communicator: what NCCL's own thread would have finished by now. */
static void progress(Comm* c) {
  if (c->state != 7 || c->aborted) return;
  if (c->pendingKind == 0) {
    c->state = c->asyncErr;
  } else if (c->pendingKind == 1) {
    if (arrived(c->dir, c->nranks, 0, NULL) == c->nranks) {
      c->state = knob("FAKE_NCCL_INIT", "fail") ? 6 : 0;
      say("init done comm=%d state=%d", c->serial, c->state);
    }
  } else if (c->pendingKind == 2) {
    int same = 0;
    if (arrived(c->dir, c->nranks, c->splitColor, &same) == c->nranks) {
      if (knob("FAKE_NCCL_SPLIT", "fail")) {
        c->state = 6;
      } else {
        Comm* child = newComm(same, 0, 0);
        snprintf(child->base, sizeof child->base, "%.380s-c%d", c->dir, c->splitColor);
        *c->splitOut = child;
        c->state = 0;
        say("split done parent=%d comm=%d", c->serial, child->serial);
      }
    }
  }
}

int ncclCommGetAsyncError(Comm* c, int* e) {
  if (!c || c->destroyed) return 4;
  if (c->blocking) {
    *e = c->asyncErr;
    return 0;
  }
  progress(c);
  if (c->errorAt > 0 && nowMs() >= c->errorAt) c->asyncErr = 6;
  *e = c->state == 0 ? c->asyncErr : c->state;
  return 0;
}

/* Refuses calls on a non-blocking communicator whose last call has not completed. */
static int busy(Comm* c) {
  if (c && !c->blocking && c->state == 7) {
    say("refused: comm=%d is in progress", c->serial);
    return 5;
  }
  return 0;
}

/* A non-blocking call's return: in progress until the next state query. */
static int started(Comm* c, int stuck) {
  if (c->blocking) return 0;
  c->state = 7;
  c->pendingKind = stuck ? 3 : 0;
  return 7;
}

#ifndef FAKE_NCCL_2_13
int ncclCommSplit(Comm* p, int color, int key, Comm** out, Config* cfg) {
  int blocking, e = readConfig(cfg, &blocking);
  if (e) return e;
  if (!p || p->aborted || p->destroyed) return 4;
  if ((e = busy(p))) return e;
  maybeExit("split", p->rank);
  if (p->blocking) {
    *out = color < 0 ? NULL : newComm(1, 0, 1);
    say("split parent=%d color=%d key=%d comm=%d", p->serial, color, key, *out ? (*out)->serial : 0);
    return 0;
  }
  /* NCCL runs the split in the parent's mode: the child appears when the parent's state is done. */
  *out = NULL;
  snprintf(p->dir, sizeof p->dir, "%s-s%d", p->base, ++p->splits);
  if (arrive(p->dir, p->rank, color)) return 2;
  p->splitOut = out;
  p->splitColor = color;
  p->state = 7;
  p->pendingKind = knob("FAKE_NCCL_SPLIT", "hang") ? 3 : 2;
  say("split parent=%d color=%d key=%d blocking=%d pending", p->serial, color, key, blocking);
  return 7;
}
#endif

/* The memory stays: a late call from another thread must not touch freed memory. */
int ncclCommAbort(Comm* c) {
  c->aborted = 1;
  say("abort comm=%d", c->serial);
  if (c->slowAbort) usleep(2000 * 1000);
  return 0;
}
#ifndef FAKE_NCCL_2_13
int ncclCommFinalize(Comm* c) {
  say("finalize comm=%d", c->serial);
  if (c->aborted || c->destroyed || busy(c)) return 4;
  return started(c, 0);
}
#endif
int ncclCommDestroy(Comm* c) {
  say("destroy comm=%d", c->serial);
  if (c->destroyed || busy(c)) return 4;
  c->destroyed = 1;
  return 0;
}

static int checked(Comm* c, int dt, int op, void* stream) {
  if (!c || c->destroyed || c->aborted || !stream) return 4;
  if (!itemBytes(dt) || op < 0 || op > 4) return 4;
  if (op == 4 && dt <= 5) return 4; /* ncclAvg: floating types only */
  return busy(c);
}

/* The traps; returns what the call returns. */
static int trap(Comm* c, size_t n) {
  if (n == 777 || n == 779) {
    c->slowAbort = n == 779;
    if (!c->blocking) return started(c, 1);
    for (int i = 0; i < 2000 && !c->aborted; i++) usleep(5000);
    return c->aborted ? 6 : 0;
  }
  /* Non-blocking: the call completes, and the peer's failure shows a little later, as on NCCL. */
  if (n == 778 && c->blocking) c->asyncErr = 6;
  if (n == 778 && !c->blocking) c->errorAt = nowMs() + 50;
  return started(c, 0);
}

int ncclAllReduce(const void* s, void* r, size_t n, int dt, int op, Comm* c, void* stream) {
  int e = checked(c, dt, op, stream);
  if (e) return e;
  say("allReduce comm=%d n=%zu dt=%d op=%d inplace=%d", c->serial, n, dt, op, s == r);
  if (s != r) memmove(r, s, n * itemBytes(dt));
  return trap(c, n);
}

int ncclReduce(const void* s, void* r, size_t n, int dt, int op, int root, Comm* c, void* stream) {
  int e = checked(c, dt, op, stream);
  if (e || root != 0 || !r) return e ? e : 4;
  say("reduce comm=%d n=%zu dt=%d op=%d root=%d", c->serial, n, dt, op, root);
  if (s != r) memmove(r, s, n * itemBytes(dt));
  return started(c, 0);
}

int ncclReduceScatter(const void* s, void* r, size_t n, int dt, int op, Comm* c, void* stream) {
  int e = checked(c, dt, op, stream);
  if (e) return e;
  say("reduceScatter comm=%d n=%zu dt=%d op=%d", c->serial, n, dt, op);
  if (s != r) memmove(r, s, n * itemBytes(dt));
  return started(c, 0);
}

int ncclAllGather(const void* s, void* r, size_t n, int dt, Comm* c, void* stream) {
  int e = checked(c, dt, 0, stream);
  if (e) return e;
  say("allGather comm=%d n=%zu dt=%d", c->serial, n, dt);
  if (s != r) memmove(r, s, n * itemBytes(dt));
  return started(c, 0);
}

int ncclBroadcast(const void* s, void* r, size_t n, int dt, int root, Comm* c, void* stream) {
  int e = checked(c, dt, 0, stream);
  if (e || root != 0) return e ? e : 4;
  say("broadcast comm=%d n=%zu dt=%d root=%d", c->serial, n, dt, root);
  if (s != r) memmove(r, s, n * itemBytes(dt));
  return started(c, 0);
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
