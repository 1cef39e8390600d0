// Asynchronous file reads and writes straight between files and storages (ZeRO's NVMe offload):
// pread/pwrite on two worker threads, so a training step can read the next optimizer sub-group
// and write the previous one while it updates the current one. The step is synchronous JS, so
// completion is a blocking wait on a ticket rather than a promise.
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include "tensor/storage.h"
#include "util/args.h"

namespace mt {
namespace {

struct Request {
  int64_t ticket;
  bool write;
  int fd;
  int64_t fileOffset;
  uint8_t* data;
  int64_t bytes;
};

struct Result {
  bool done = false;
  std::string error;  // empty on success
};

// Two threads: one read and one write can be in flight together (the pipeline's steady state).
class IoPool {
 public:
  int64_t submit(Request r) {
    std::unique_lock<std::mutex> lock(mu_);
    if (threads_.empty())
      for (int i = 0; i < 2; i++) threads_.emplace_back([this] { run(); }).detach();
    r.ticket = next_++;
    results_[r.ticket] = Result{};
    queue_.push_back(r);
    work_.notify_one();
    return r.ticket;
  }

  // Blocks until `ticket` finished; returns its error ("" on success) and forgets it.
  std::string wait(int64_t ticket) {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = results_.find(ticket);
    MT_CHECK(it != results_.end(), "ioWait: unknown or already waited ticket ", ticket);
    done_.wait(lock, [&] { return results_[ticket].done; });
    std::string err = results_[ticket].error;
    results_.erase(ticket);
    return err;
  }

 private:
  void run() {
    for (;;) {
      Request r;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_.wait(lock, [&] { return !queue_.empty(); });
        r = queue_.front();
        queue_.pop_front();
      }
      std::string err = transfer(r);
      std::lock_guard<std::mutex> lock(mu_);
      results_[r.ticket] = Result{true, err};
      done_.notify_all();
    }
  }

  static std::string transfer(const Request& r) {
    int64_t at = 0;
    while (at < r.bytes) {
      ssize_t n = r.write ? pwrite(r.fd, r.data + at, size_t(r.bytes - at), off_t(r.fileOffset + at))
                          : pread(r.fd, r.data + at, size_t(r.bytes - at), off_t(r.fileOffset + at));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return cat(r.write ? "pwrite" : "pread", " failed: ", std::strerror(errno));
      if (n == 0) return cat("short read: the file ends after ", r.fileOffset + at, " bytes; wanted ", r.bytes,
                             " bytes from offset ", r.fileOffset);
      at += n;
    }
    return "";
  }

  std::mutex mu_;
  std::condition_variable work_, done_;
  std::deque<Request> queue_;
  std::unordered_map<int64_t, Result> results_;
  std::vector<std::thread> threads_;
  int64_t next_ = 1;
};

// Never destroyed: detached workers may still wait on its condition variable at exit.
IoPool& pool() {
  static IoPool* p = new IoPool();
  return *p;
}

// ioSubmit(write, fd, fileOffset, storageId, byteOffset, bytes) -> ticket. The caller keeps the
// storage alive and the fd open until ioWait(ticket) returned.
Napi::Value IoSubmit(const Napi::CallbackInfo& info) {
  bool write = argBool(info, 0);
  int64_t fd = argInt(info, 1), fileOffset = argInt(info, 2), id = argInt(info, 3), off = argInt(info, 4),
          bytes = argInt(info, 5);
  MT_CHECK(fd >= 0 && fileOffset >= 0 && bytes >= 0, "ioSubmit: bad fd ", fd, ", offset ", fileOffset, " or size ", bytes);
  auto* data = static_cast<uint8_t*>(bytePtr(id, off, bytes));
  int64_t t = pool().submit(Request{0, write, int(fd), fileOffset, data, bytes});
  return Napi::Number::New(info.Env(), double(t));
}

// ioWait(ticket): returns once the transfer finished; throws its error.
Napi::Value IoWait(const Napi::CallbackInfo& info) {
  std::string err = pool().wait(argInt(info, 0));
  MT_CHECK(err.empty(), err);
  return info.Env().Undefined();
}

}  // namespace

void registerFileIo(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "ioSubmit", IoSubmit);
  MT_EXPORT(exports, "ioWait", IoWait);
}

}  // namespace mt
