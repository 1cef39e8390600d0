#include "comm/segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include "tensor/storage.h"
#include "util/check.h"

namespace mt::comm {

Segment Segment::create(const std::string& name, size_t bytes, bool prefault) {
  std::string path = "/" + name;
  int fd = shm_open(path.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  MT_CHECK(fd >= 0, "shm: cannot create shared-memory segment ", path, ": ", std::strerror(errno));
  if (ftruncate(fd, off_t(bytes)) != 0) {
    int e = errno;
    close(fd);
    shm_unlink(path.c_str());
    throw Error(cat("shm: cannot size segment ", path, " to ", bytes, " bytes: ", std::strerror(e),
                    " (is /dev/shm full?)"));
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | (prefault ? MAP_POPULATE : 0), fd, 0);
  int e = errno;
  close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(path.c_str());
    throw Error(cat("shm: cannot map segment ", path, ": ", std::strerror(e)));
  }
  // MAP_POPULATE maps the pages; writing them makes tmpfs allocate them now, not mid-collective.
  // A bus error here would mean /dev/shm ran out of space.
  if (prefault) std::memset(p, 0, bytes);
  Segment s;
  s.base_ = static_cast<char*>(p);
  s.bytes_ = bytes;
  s.name_ = name;
  s.owner_ = true;
  s.linked_ = true;
  s.counted_ = prefault;
  if (prefault) accountBytes(Tag::Comm, 0, int64_t(bytes));
  return s;
}

Segment Segment::open(const std::string& name, size_t minBytes, bool populate) {
  std::string path = "/" + name;
  int fd = shm_open(path.c_str(), O_RDWR, 0600);
  MT_CHECK(fd >= 0, "shm: cannot open peer segment ", path, ": ", std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || size_t(st.st_size) < minBytes) {
    close(fd);
    throw Error(cat("shm: peer segment ", path, " has ", st.st_size, " bytes, expected at least ", minBytes));
  }
  size_t bytes = size_t(st.st_size);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
  int e = errno;
  close(fd);
  MT_CHECK(p != MAP_FAILED, "shm: cannot map peer segment ", path, ": ", std::strerror(e));
  Segment s;
  s.base_ = static_cast<char*>(p);
  s.bytes_ = bytes;
  s.name_ = name;
  return s;
}

Segment& Segment::operator=(Segment&& o) noexcept {
  if (this != &o) {
    this->~Segment();
    base_ = o.base_;
    bytes_ = o.bytes_;
    name_ = std::move(o.name_);
    owner_ = o.owner_;
    linked_ = o.linked_;
    counted_ = o.counted_;
    o.base_ = nullptr;
    o.bytes_ = 0;
    o.owner_ = o.linked_ = o.counted_ = false;
  }
  return *this;
}

Segment::~Segment() {
  if (!base_) return;
  unlink();
  munmap(base_, bytes_);
  if (counted_) accountBytes(Tag::Comm, 0, -int64_t(bytes_));
  base_ = nullptr;
}

void Segment::unlink() {
  if (owner_ && linked_) {
    shm_unlink(("/" + name_).c_str());
    linked_ = false;
  }
}

bool processAlive(pid_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  // kill() succeeds on a zombie that its parent has not reaped yet: look at its state.
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", int(pid));
  FILE* f = std::fopen(path, "r");
  if (!f) return errno != ENOENT;
  char buf[512];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* close = std::strrchr(buf, ')');
  return !(close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X'));
}

int cleanupStaleSegments() {
  DIR* d = opendir("/dev/shm");
  if (!d) return 0;
  int removed = 0;
  while (dirent* e = readdir(d)) {
    if (std::strncmp(e->d_name, "mtshm.", 6) != 0) continue;
    const char* dot = std::strrchr(e->d_name, '.');
    char* end = nullptr;
    long pid = std::strtol(dot + 1, &end, 10);
    if (!end || *end != 0 || pid <= 0) continue;
    if (!processAlive(pid_t(pid)) && shm_unlink((std::string("/") + e->d_name).c_str()) == 0) removed++;
  }
  closedir(d);
  return removed;
}

}  // namespace mt::comm
