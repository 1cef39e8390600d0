// Flags in shared memory that a process can sleep on (futex), so that waiting ranks yield their
// core: ranks often outnumber cores, and a spinning waiter would steal the time its peer needs.
#pragma once
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <ctime>

namespace mt::comm {

// A counter that only grows (modulo 2^32) and a count of sleepers, alone on a cache line.
// Not FUTEX_PRIVATE: the word lives in a MAP_SHARED segment mapped by several processes.
struct alignas(64) Flag {
  std::atomic<uint32_t> value{0};
  std::atomic<uint32_t> waiters{0};
};
static_assert(sizeof(Flag) == 64, "one flag per cache line");

// Whether counter `v` has reached `target`, with wrap-around.
inline bool reached(uint32_t v, uint32_t target) { return int32_t(v - target) >= 0; }

inline void futexWake(std::atomic<uint32_t>* addr) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

// Sleeps while *addr == expected, at most `ns` nanoseconds (spurious returns are fine).
inline void futexWait(std::atomic<uint32_t>* addr, uint32_t expected, int64_t ns) {
  timespec ts{time_t(ns / 1000000000), long(ns % 1000000000)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

// Publishes a new value and wakes sleepers. seq_cst on both sides (store value / load waiters
// here; add waiters / load value in sleepOnce) means no wake-up is lost.
inline void post(Flag& f, uint32_t v) {
  f.value.store(v, std::memory_order_seq_cst);
  if (f.waiters.load(std::memory_order_seq_cst) != 0) futexWake(&f.value);
}

inline void bump(Flag& f) {
  f.value.fetch_add(1, std::memory_order_seq_cst);
  if (f.waiters.load(std::memory_order_seq_cst) != 0) futexWake(&f.value);
}

// One bounded sleep until f.value differs from `seen` (or `ns` passes).
inline void sleepOnce(Flag& f, uint32_t seen, int64_t ns) {
  f.waiters.fetch_add(1, std::memory_order_seq_cst);
  if (f.value.load(std::memory_order_seq_cst) == seen) futexWait(&f.value, seen, ns);
  f.waiters.fetch_sub(1, std::memory_order_seq_cst);
}

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace mt::comm
