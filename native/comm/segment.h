// POSIX shared-memory segments: created pre-faulted by their owner, mapped by peers, unlinked
// as soon as every peer has mapped them (so a crash afterwards leaves nothing in /dev/shm).
#pragma once
#include <sys/types.h>
#include <cstddef>
#include <string>

namespace mt::comm {

class Segment {
 public:
  // Creates /dev/shm/<name> of `bytes`, maps it and touches every page (first-touch writes to a
  // fresh segment run at 0.3-1.7 GB/s here, so no collective should pay them). Counted as 'comm'.
  // Without `prefault` the pages stay virtual (an arena touches them as it hands them out).
  static Segment create(const std::string& name, size_t bytes, bool prefault = true);
  // Maps a peer's segment; its size must be at least `minBytes`. `populate` maps its pages now.
  static Segment open(const std::string& name, size_t minBytes, bool populate = true);

  Segment() = default;
  Segment(Segment&& o) noexcept { *this = std::move(o); }
  Segment& operator=(Segment&& o) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  void unlink();  // idempotent; only the owner unlinks
  char* data() const { return base_; }
  size_t size() const { return bytes_; }
  const std::string& name() const { return name_; }

 private:
  char* base_ = nullptr;
  size_t bytes_ = 0;
  std::string name_;
  bool owner_ = false;
  bool linked_ = false;
  bool counted_ = false;
};

// Whether process `pid` is alive (a zombie counts as dead).
bool processAlive(pid_t pid);

// Unlinks /dev/shm/mtshm.* segments whose creating process (the name's last field) is gone.
// Returns how many were removed.
int cleanupStaleSegments();

}  // namespace mt::comm
