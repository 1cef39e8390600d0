// A lock for critical sections of a few instructions that several threads may enter: in a
// multi-threaded process an uncontended std::mutex lock + unlock is ~11.5 ns here (glibc's unlock
// is an atomic exchange), this one ~5 ns (the unlock is a plain store). A waiter yields its time
// slice after a short spin, so a holder preempted on a busy machine gets the core back.
#pragma once
#include <atomic>
#include <thread>

namespace mt {

class SpinLock {
 public:
  void lock() {
    for (int spins = 0; held_.exchange(true, std::memory_order_acquire);) {
      while (held_.load(std::memory_order_relaxed)) {
        if (++spins >= 64) {
          std::this_thread::yield();
        } else {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause();
#endif
        }
      }
    }
  }
  void unlock() { held_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> held_{false};
};

}  // namespace mt
