#include "comm/progress.h"

#include <vector>
#include "util/check.h"

namespace mt::comm {
namespace {
bool isP2P(Kind k) { return k == Kind::Send || k == Kind::Recv; }
}  // namespace

uint64_t Engine::submit(OpDesc d) {
  auto op = std::make_shared<Op>();
  op->d = std::move(d);
  std::unique_lock<std::mutex> l(mu_);
  MT_CHECK(!stop_, kindName(op->d.kind), " on ", comm_->groupName(), ": the communicator was destroyed");
  op->id = nextId_++;
  ops_[op->id] = op;
  if (isP2P(op->d.kind)) {
    p2pIncoming_.push_back(op);
    if (!p2pThread_.joinable()) p2pThread_ = std::thread([this] { p2pLoop(); });
    l.unlock();
    comm_->ringOwnBell();
  } else {
    collectives_.push_back(op);
    if (!collThread_.joinable()) collThread_ = std::thread([this] { collectiveLoop(); });
    cv_.notify_all();
  }
  return op->id;
}

void Engine::run(OpDesc d) {
  if (!isP2P(d.kind)) {
    std::unique_lock<std::mutex> l(mu_);
    MT_CHECK(!stop_, kindName(d.kind), " on ", comm_->groupName(), ": the communicator was destroyed");
    if (collectives_.empty() && !busy_) {
      // Nothing queued: run here and save two thread hand-offs (tens of microseconds).
      busy_ = true;
      l.unlock();
      std::string error;
      try {
        comm_->runCollective(d);
      } catch (const std::exception& e) {
        error = e.what();
      }
      l.lock();
      busy_ = false;
      cv_.notify_all();
      if (!error.empty()) throw Error(error);
      return;
    }
  }
  wait(submit(std::move(d)));
}

void Engine::wait(uint64_t id) {
  std::unique_lock<std::mutex> l(mu_);
  auto it = ops_.find(id);
  MT_CHECK(it != ops_.end(), "wait: unknown or already completed operation ", id);
  std::shared_ptr<Op> op = it->second;
  cv_.wait(l, [&] { return op->done; });
  ops_.erase(id);
  if (!op->error.empty()) throw Error(op->error);
}

bool Engine::test(uint64_t id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = ops_.find(id);
  return it == ops_.end() || it->second->done;
}

void Engine::complete(const std::shared_ptr<Op>& op, const std::string& error) {
  std::lock_guard<std::mutex> l(mu_);
  op->error = error;
  op->done = true;
  cv_.notify_all();
}

void Engine::collectiveLoop() {
  for (;;) {
    std::shared_ptr<Op> op;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || (!collectives_.empty() && !busy_); });
      if (stop_) return;
      op = collectives_.front();
      collectives_.pop_front();
      busy_ = true;
    }
    std::string error;
    try {
      comm_->runCollective(op->d);
    } catch (const std::exception& e) {
      error = e.what();
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      busy_ = false;
    }
    complete(op, error);
  }
}

// Every pending send and receive advances as far as its peer allows; when none can, the
// thread sleeps on this rank's bell, which peers ring on every chunk they post or take.
void Engine::p2pLoop() {
  ShmComm& c = *comm_;
  const int n = c.config().size;
  struct Pending {
    std::shared_ptr<Op> op;
    ShmComm::P2PTask task;
    bool started = false;
  };
  std::vector<std::deque<Pending>> sends(n), recvs(n);
  for (;;) {
    uint32_t bell = c.myBell().value.load(std::memory_order_seq_cst);
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
      while (!p2pIncoming_.empty()) {
        auto op = p2pIncoming_.front();
        p2pIncoming_.pop_front();
        Pending p{op, {}, false};
        p.task.op = &op->d;
        p.task.bytes = op->d.count * int64_t(itemsize(op->d.dtype));
        p.task.chunks = c.p2pChunks(p.task.bytes);
        (op->d.kind == Kind::Send ? sends : recvs)[op->d.root].push_back(std::move(p));
      }
    }
    bool moved = false, pending = false;
    for (int q = 0; q < n; q++) {
      for (auto* queue : {&sends[q], &recvs[q]}) {
        while (!queue->empty()) {
          Pending& p = queue->front();
          std::string error = c.broken();
          if (!error.empty()) {
            error = std::string(kindName(p.op->d.kind)) + " on " + c.groupName() +
                    " cannot run: this communicator failed earlier: " + error;
          } else {
            try {
              if (!p.started) {
                c.startP2P(p.task);
                p.started = true;
              }
              moved |= p.op->d.kind == Kind::Send ? c.advanceSend(p.task) : c.advanceRecv(p.task);
              if (p.task.chunk < p.task.chunks) {
                c.checkP2P(p.task);
                pending = true;
                break;
              }
            } catch (const std::exception& e) {
              error = e.what();
              c.abort(error);
            }
          }
          complete(p.op, error);
          queue->pop_front();
          moved = true;
        }
      }
    }
    if (!moved) sleepOnce(c.myBell(), bell, pending ? 50'000'000 : 1'000'000'000);
  }
}

void Engine::shutdown() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) return;
    stop_ = true;
    for (auto& [id, op] : ops_) {
      if (op->done) continue;
      op->error = std::string(kindName(op->d.kind)) + " on " + comm_->groupName() + ": the communicator was destroyed";
    }
    cv_.notify_all();
  }
  comm_->stop();
  comm_->ringOwnBell();
  if (collThread_.joinable()) collThread_.join();
  if (p2pThread_.joinable()) p2pThread_.join();
  std::lock_guard<std::mutex> l(mu_);
  for (auto& [id, op] : ops_) op->done = true;
  cv_.notify_all();
}

}  // namespace mt::comm
