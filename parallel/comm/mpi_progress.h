// mpi_progress.h: the MPI backend's communication thread and the completion side of an operation.
//
// One ProgressThread per process runs every operation of every MPI communicator. Operations
// (MpiOp) are state machines advanced with MPI_Testsome; when none makes progress the thread spins
// for 50 us, then yields, then naps (up to 256 us) until new work arrives. With no operation in
// flight it sleeps on a condition variable. Callers block in Work::wait() on a condition variable
// of the operation's MpiWork, never spinning; a wait longer than ZT_COMM_TIMEOUT_S aborts the job
// naming the operation and the peer it still waits for.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "parallel/comm/comm.h"

namespace zt {

// Which peers an operation still waits for; written by the communication thread, read by a
// caller whose wait timed out.
struct Stall {
  std::vector<int> world_ranks;                 // group rank -> world rank
  std::atomic<int> recv_from{-1}, send_to{-1};  // group ranks, -1 = nothing pending
  std::string describe() const;
};

class MpiWork : public WorkImpl {
 public:
  MpiWork(std::string what, std::string peers, std::shared_ptr<Stall> stall = nullptr)
      : what_(std::move(what)), peers_(std::move(peers)), stall_(std::move(stall)) {}
  void wait() override;
  bool test() override;
  void abandon() override;  // stops the progress thread (comm.h, WorkImpl::abandon)
  void finish(const std::string& error = {});
  const std::string& what() const { return what_; }
  const std::shared_ptr<Stall>& stall() const { return stall_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string error_;
  std::string what_, peers_;
  std::shared_ptr<Stall> stall_;
};

class ProgressThread;

// One operation the thread runs.
struct MpiOp {
  std::shared_ptr<MpiWork> work;
  virtual ~MpiOp() = default;
  virtual void start(ProgressThread& thread) = 0;
  // Moves the operation on; sets `progressed` when anything happened. True when complete.
  virtual bool advance(ProgressThread& thread, bool& progressed) = 0;
  virtual void release(ProgressThread&) {}  // give back pooled buffers (also after a failure)
};

// Buffers owned by the communication thread, reused across operations (touched only by it).
class BufferPool {
 public:
  ~BufferPool();
  char* get(size_t bytes);  // the smallest free block that fits, else a new one
  void put(char* p);        // nullptr is fine

 private:
  struct Block {
    char* p;
    size_t bytes;
  };
  std::vector<Block> free_;
  std::unordered_map<char*, size_t> sizes_;
};

class ProgressThread {
 public:
  static ProgressThread& get();  // started on first use, stopped at process shutdown
  void submit(std::unique_ptr<MpiOp> op);
  BufferPool& pool() { return pool_; }
  // Ends the thread after its current step (it checks between steps, even in the middle of an
  // operation); whatever is in flight fails. Idempotent; not from the thread itself.
  void stop();

 private:
  ProgressThread();
  void take_new();
  void run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<MpiOp>> queue_;
  std::atomic<bool> has_new_{false};
  std::atomic<bool> stop_{false};
  bool stopped_ = false;
  std::list<std::unique_ptr<MpiOp>> active_;  // touched by the thread only
  BufferPool pool_;                           // touched by the thread only
  std::thread thread_;
};

}  // namespace zt
