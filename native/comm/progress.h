// Progress for one communicator: collectives run in issue order on a native thread (or inline
// on the caller when nothing is queued), point-to-point transfers on a second thread that
// advances every pending send and receive together. JS waits on a condition variable.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include "comm/shm_comm.h"

namespace mt::comm {

class Engine {
 public:
  explicit Engine(std::unique_ptr<ShmComm> comm) : comm_(std::move(comm)) {}
  ~Engine() { shutdown(); }

  ShmComm& comm() { return *comm_; }
  // Queues an operation; returns its id for wait()/test().
  uint64_t submit(OpDesc d);
  // Runs an operation to completion (inline when the collective queue is idle); throws on failure.
  void run(OpDesc d);
  // Blocks until operation `id` completes and forgets it; throws its error.
  void wait(uint64_t id);
  bool test(uint64_t id);
  // Fails what is queued, stops and joins the threads. Idempotent.
  void shutdown();

 private:
  struct Op {
    uint64_t id;
    OpDesc d;
    bool done = false;
    std::string error;
  };
  void collectiveLoop();
  void p2pLoop();
  void execute(Op& op);
  void complete(const std::shared_ptr<Op>& op, const std::string& error);

  std::unique_ptr<ShmComm> comm_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Op>> collectives_;
  std::deque<std::shared_ptr<Op>> p2pIncoming_;
  std::unordered_map<uint64_t, std::shared_ptr<Op>> ops_;
  uint64_t nextId_ = 1;
  bool busy_ = false;   // a collective is executing (on the thread or inline)
  bool stop_ = false;
  std::thread collThread_, p2pThread_;
};

}  // namespace mt::comm
