// mpi_progress.cpp: the communication thread, its buffer pool and the completion handle.
#include "parallel/comm/mpi_progress.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <exception>

#include "parallel/comm/comm.h"
#include "parallel/comm/mpi_tuning.h"
#include "runtime/alloc.h"
#include "runtime/error.h"
#include "runtime/process.h"

namespace zt {

using Clock = std::chrono::steady_clock;

std::string Stall::describe() const {
  int from = recv_from.load(), to = send_to.load();
  std::string s;
  if (from >= 0) s = cat("still waiting for data from world rank ", world_ranks[from]);
  if (to >= 0)
    s += cat(s.empty() ? "still waiting" : " and", " for world rank ", world_ranks[to],
             " to take its data");
  return s.empty() ? "all messages done" : s;
}

void MpiWork::wait() {
  std::unique_lock<std::mutex> lock(mu_);
  const double limit = comm_timeout_s();
  if (limit <= 0) {
    cv_.wait(lock, [&] { return done_; });
  } else if (!cv_.wait_for(lock, std::chrono::duration<double>(limit), [&] { return done_; })) {
    lock.unlock();
    abort_job(cat(what_, " did not complete within the communication timeout (", limit,
                  " s, --comm-timeout / ZT_COMM_TIMEOUT_S); a peer rank may have failed or "
                  "stopped (",
                  stall_ ? stall_->describe() : "peers: " + peers_, ")"));
  }
  if (!error_.empty()) fail(error_);
}

bool MpiWork::test() {
  std::lock_guard<std::mutex> lock(mu_);
  if (done_ && !error_.empty()) fail(error_);
  return done_;
}

void MpiWork::finish(const std::string& error) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ = true;
  if (!error.empty()) error_ = what_ + ": " + error;
  cv_.notify_all();
}

void MpiWork::abandon() { ProgressThread::get().stop(); }

BufferPool::~BufferPool() {
  for (auto& b : free_) zt::free(b.p);
}

char* BufferPool::get(size_t bytes) {
  auto best = free_.end();
  for (auto it = free_.begin(); it != free_.end(); ++it)
    if (it->bytes >= bytes && (best == free_.end() || it->bytes < best->bytes)) best = it;
  if (best != free_.end()) {
    char* p = best->p;
    sizes_[p] = best->bytes;
    free_.erase(best);
    return p;
  }
  char* p = static_cast<char*>(zt::alloc(bytes, MemCategory::buffers));
  sizes_[p] = bytes;
  return p;
}

void BufferPool::put(char* p) {
  if (!p) return;
  free_.push_back({p, sizes_[p]});
  sizes_.erase(p);
}

ProgressThread& ProgressThread::get() {
  static ProgressThread* thread = [] {
    auto* t = new ProgressThread();  // lives until the process context shuts down
    at_process_shutdown([t](bool) { t->stop(); });
    return t;
  }();
  return *thread;
}

ProgressThread::ProgressThread() : thread_([this] { run(); }) {}

void ProgressThread::submit(std::unique_ptr<MpiOp> op) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) fail(op->work->what(), ": the communication thread has stopped");
    queue_.push_back(std::move(op));
    has_new_.store(true, std::memory_order_release);
  }
  cv_.notify_one();
}

void ProgressThread::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stop_.store(true);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ProgressThread::take_new() {
  std::deque<std::unique_ptr<MpiOp>> fresh;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fresh.swap(queue_);
    has_new_.store(false, std::memory_order_relaxed);
  }
  for (auto& op : fresh) {
    try {
      op->start(*this);
      active_.push_back(std::move(op));
    } catch (const std::exception& e) {
      op->release(*this);
      op->work->finish(e.what());
    }
  }
}

void ProgressThread::run() {
  // Signals meant for the program (SIGTERM / SIGUSR1 checkpoint-and-exit, Ctrl-C) go to the
  // caller's threads, never to this one.
  sigset_t block;
  sigemptyset(&block);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM}) sigaddset(&block, sig);
  pthread_sigmask(SIG_BLOCK, &block, nullptr);
  auto last_progress = Clock::now();
  int nap_us = 0;
  for (;;) {
    if (has_new_.load(std::memory_order_acquire)) {
      take_new();
      last_progress = Clock::now();
    }
    if (stop_.load()) break;
    if (active_.empty()) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_.load() || !queue_.empty(); });
      continue;
    }
    bool progressed = false;
    for (auto it = active_.begin(); it != active_.end();) {
      MpiOp& op = **it;
      bool finished = false;
      std::string error;
      try {
        finished = op.advance(*this, progressed);
      } catch (const std::exception& e) {
        finished = true;
        error = e.what();
      }
      if (finished) {
        op.release(*this);
        op.work->finish(error);
        it = active_.erase(it);
        progressed = true;
      } else {
        ++it;
      }
    }
    if (progressed) {
      last_progress = Clock::now();
      nap_us = 0;
      continue;
    }
    auto idle = Clock::now() - last_progress;
    if (idle < std::chrono::microseconds(50)) continue;  // spin: the next chunk is near
    if (idle < std::chrono::milliseconds(2)) {
      sched_yield();
      continue;
    }
    // A peer is late (still computing): nap, waking at once for new work.
    nap_us = std::clamp(nap_us * 2, 8, 256);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::microseconds(nap_us),
                 [&] { return stop_.load() || has_new_.load(); });
  }
  // Stopped: whatever is left will never complete.
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& op : queue_) active_.push_back(std::move(op));
  queue_.clear();
  for (auto& op : active_) op->work->finish("the communication thread stopped before it completed");
  active_.clear();
}

}  // namespace zt
