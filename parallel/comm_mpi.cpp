// comm_mpi.cpp: the MPI backend of Communicator.
//
// Why not the MPI collectives: Open MPI 4.1's MPI_Reduce_scatter_block and MPI_Allreduce run at
// 0.1-1.5 GB/s on the development machine (ARCHITECTURE.md). Here every collective is a schedule of
// point-to-point messages (MPI_Isend / MPI_Irecv of bytes) that the communication thread runs:
//   - reduce-scatter: ring; at step s rank r sends block (r-s-1) mod n to r+1 and receives block
//     (r-s-2) mod n from r-1 into a small slot (stays in cache), reduces it with its own block and
//     forwards the partial at step s+1; after n-1 steps it holds block r reduced;
//   - all-reduce: that ring, then an all-gather ring of the reduced blocks (2(n-1)/n N sent);
//   - all-gather: ring forwarding each block straight into the output, no copies;
//   - broadcast: pipelined chain root -> root+1 -> ...; all-to-all: pairwise, all at once.
// Blocks are cut into chunks (ZT_COMM_CHUNK_KB, default 1024 KiB; ZT_COMM_COPY_CHUNK_KB for the
// copy-only messages), so the reduction of chunk c overlaps the transfer of chunk c+1 and a block
// is forwarded before it has fully arrived. Open MPI moves large messages between processes on one
// node with a single copy (CMA) done by the receiver.
//
// One communication thread per process runs every operation of every MPI communicator. Operations
// are state machines advanced with MPI_Testsome; when none makes progress the thread spins for
// 50 us, then yields, then naps (up to 256 us) until new work arrives. With no operation in flight
// it sleeps on a condition variable. Callers block in Work::wait() on a condition variable.
//
// Every communicator owns three MPI communicators: one for its collectives (the tag of an
// operation is its sequence number, so outstanding operations never mix), one for send/recv (the
// caller's tags), and one on which the calling thread runs MPI_Comm_split.
#include <mpi.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "parallel/comm_internal.h"
#include "parallel/reduce.h"
#include "runtime/alloc.h"
#include "runtime/error.h"
#include "runtime/process.h"

namespace zt {
namespace {

using Clock = std::chrono::steady_clock;

// ---- tunables (environment, read once)
// ------------------------------------------------------
double env_number(const char* name, double fallback, double lo) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  double d = std::strtod(v, &end);
  if (end == v || *end || d < lo)
    fail("environment variable ", name, "='", v, "' is not a number >= ", lo);
  return d;
}

struct Tuning {
  size_t chunk_bytes;       // reduce chunks
  size_t copy_chunk_bytes;  // forward-only chunks (all-gather, broadcast, all-to-all, send)
  int slots;                // receive slots per reducing operation
  int window;               // messages in flight per direction
  bool streaming;           // non-temporal stores for final results
  double timeout_s;         // Work::wait watchdog, 0 = none
  bool builtin_allgather;   // all_gather by MPI_Iallgatherv instead of the ring
};

const Tuning& tuning() {
  static const Tuning t = [] {
    Tuning t;
    t.chunk_bytes = (size_t)env_number("ZT_COMM_CHUNK_KB", 1024, 4) * 1024;
    t.copy_chunk_bytes = (size_t)env_number("ZT_COMM_COPY_CHUNK_KB", 4096, 4) * 1024;
    t.slots = (int)env_number("ZT_COMM_SLOTS", 4, 1);
    t.window = (int)env_number("ZT_COMM_WINDOW", 16, 1);
    t.streaming = env_number("ZT_COMM_STREAMING", 1, 0) != 0;
    t.timeout_s = env_number("ZT_COMM_TIMEOUT_S", 600, 0);
    const char* ag = std::getenv("ZT_COMM_ALLGATHER");
    std::string ag_s = ag ? ag : "ring";
    if (ag_s != "ring" && ag_s != "mpi") fail("ZT_COMM_ALLGATHER='", ag_s, "' is not ring or mpi");
    t.builtin_allgather = ag_s == "mpi";
    if (t.chunk_bytes > (1u << 30) || t.copy_chunk_bytes > (1u << 30))
      fail("ZT_COMM_CHUNK_KB / ZT_COMM_COPY_CHUNK_KB must be at most 1048576 (1 GiB)");
    return t;
  }();
  return t;
}

std::string mpi_error_string(int rc) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, buf, &len);
  return std::string(buf, len);
}

#define ZT_MPI(call, where)                                                                   \
  do {                                                                                        \
    int zt_rc_ = (call);                                                                      \
    if (zt_rc_ != MPI_SUCCESS) fail(where, ": " #call " failed: ", mpi_error_string(zt_rc_)); \
  } while (0)

// ---- completion handle
// --------------------------------------------------------------------------
// Which peers an operation still waits for; written by the communication thread, read by a
// caller whose wait timed out.
struct Stall {
  std::vector<int> world_ranks;                 // group rank -> world rank
  std::atomic<int> recv_from{-1}, send_to{-1};  // group ranks, -1 = nothing pending
  std::string describe() const {
    int from = recv_from.load(), to = send_to.load();
    std::string s;
    if (from >= 0) s = cat("still waiting for data from world rank ", world_ranks[from]);
    if (to >= 0)
      s += cat(s.empty() ? "still waiting" : " and", " for world rank ", world_ranks[to],
               " to take its data");
    return s.empty() ? "all messages done" : s;
  }
};

class MpiWork : public WorkImpl {
 public:
  MpiWork(std::string what, std::string peers, std::shared_ptr<Stall> stall = nullptr)
      : what_(std::move(what)), peers_(std::move(peers)), stall_(std::move(stall)) {}

  void wait() override {
    std::unique_lock<std::mutex> lock(mu_);
    double limit = tuning().timeout_s;
    if (limit <= 0) {
      cv_.wait(lock, [&] { return done_; });
    } else if (!cv_.wait_for(lock, std::chrono::duration<double>(limit), [&] { return done_; })) {
      lock.unlock();
      abort_job(cat(what_, " did not complete within ZT_COMM_TIMEOUT_S=", limit,
                    " s; a peer rank may have failed or stopped (",
                    stall_ ? stall_->describe() : "peers: " + peers_, ")"));
    }
    if (!error_.empty()) fail(error_);
  }
  bool test() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_ && !error_.empty()) fail(error_);
    return done_;
  }
  void finish(const std::string& error = {}) {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    if (!error.empty()) error_ = what_ + ": " + error;
    cv_.notify_all();
  }
  const std::string& what() const { return what_; }
  const std::shared_ptr<Stall>& stall() const { return stall_; }
  void abandon() override;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string error_;
  std::string what_, peers_;
  std::shared_ptr<Stall> stall_;
};

// ---- operations
// -------------------------------------------------------------------------------------
class Engine;
void stop_engine();

struct MpiOp {
  std::shared_ptr<MpiWork> work;
  virtual ~MpiOp() = default;
  virtual void start(Engine& engine) = 0;
  // Moves the operation on; sets `progressed` when anything happened. True when complete.
  virtual bool advance(Engine& engine, bool& progressed) = 0;
  virtual void release(Engine&) {}  // give back engine buffers (also after a failure)
};

// Buffers owned by the communication thread, reused across operations (touched only by it).
class BufferPool {
 public:
  ~BufferPool() {
    for (auto& b : free_) zt::free(b.p);
  }
  char* get(size_t bytes) {
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
  void put(char* p) {
    if (!p) return;
    free_.push_back({p, sizes_[p]});
    sizes_.erase(p);
  }

 private:
  struct Block {
    char* p;
    size_t bytes;
  };
  std::vector<Block> free_;
  std::unordered_map<char*, size_t> sizes_;
};

// The communication thread of this process.
class Engine {
 public:
  static Engine& get() {
    static Engine* engine = [] {
      auto* e = new Engine();  // lives until the process context shuts down
      at_process_shutdown([e](bool) { e->stop(); });
      return e;
    }();
    return *engine;
  }

  void submit(std::unique_ptr<MpiOp> op) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) fail(op->work->what(), ": the communication thread has stopped");
      queue_.push_back(std::move(op));
      has_new_.store(true, std::memory_order_release);
    }
    cv_.notify_one();
  }

  BufferPool& pool() { return pool_; }

  // Ends the thread after its current step (it checks between steps, even in the middle of an
  // operation); whatever is in flight fails. Idempotent; not from the thread itself.
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      stop_.store(true);
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  Engine() : thread_([this] { run(); }) {}

  void take_new() {
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

  void run() {
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
    for (auto& op : active_)
      op->work->finish("the communication thread stopped before it completed");
    active_.clear();
  }

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

void stop_engine() { Engine::get().stop(); }
void MpiWork::abandon() { stop_engine(); }

// In-flight requests of one direction, completed in any order.
struct Pending {
  std::vector<MPI_Request> req;
  std::vector<int> id;
  std::vector<int> done_idx;

  size_t size() const { return req.size(); }
  void add(MPI_Request r, int i) {
    req.push_back(r);
    id.push_back(i);
  }
  // Calls on_done(id) for every completed request and drops it. Returns how many completed.
  template <typename F>
  int test(const std::string& where, F&& on_done) {
    if (req.empty()) return 0;
    done_idx.resize(req.size());
    int n = 0;
    ZT_MPI(MPI_Testsome((int)req.size(), req.data(), &n, done_idx.data(), MPI_STATUSES_IGNORE),
           where);
    if (n == MPI_UNDEFINED || n == 0) return 0;
    for (int k = 0; k < n; ++k) on_done(id[done_idx[k]]);
    size_t w = 0;
    for (size_t i = 0; i < req.size(); ++i)
      if (req[i] != MPI_REQUEST_NULL) req[w] = req[i], id[w] = id[i], ++w;
    req.resize(w);
    id.resize(w);
    return n;
  }
};

// A list of messages: sends posted in order once their dependency (a receive) is complete,
// receives posted in order (reducing ones need a free slot), at most `window` in flight each way.
// Every collective below is one Schedule.
class Schedule : public MpiOp {
 public:
  struct Send {
    int peer;
    const char* ptr;
    int bytes;
    int after_recv;  // index of the receive that must be complete first, -1 = none
  };
  struct Recv {
    int peer;
    char* dst;
    int bytes;
    const char* local = nullptr;  // reducing receive: dst = local op received
    size_t elems = 0;
    bool streaming = false;
    int after_sends = 0;  // post only once sends [0, after_sends) are complete
  };

  Schedule(MPI_Comm comm, int tag, DType dt, ReduceOp op)
      : comm_(comm), tag_(tag), dt_(dt), op_(op) {}

  std::vector<Send> sends;
  std::vector<Recv> recvs;
  // Done by the thread before the first message: memmove(copy_dst, copy_src, copy_bytes).
  char* copy_dst = nullptr;
  const char* copy_src = nullptr;
  size_t copy_bytes = 0;
  size_t scratch_bytes = 0;  // engine buffer for partial sums, see scratch()
  char* scratch = nullptr;

  int64_t bytes_sent() const {
    int64_t b = 0;
    for (const Send& s : sends) b += s.bytes;
    return b;
  }

  void start(Engine& engine) override {
    int reducing = 0;
    for (const Recv& r : recvs) reducing += r.local != nullptr;
    int slots = std::min(reducing, tuning().slots);
    for (int i = 0; i < slots; ++i) free_slots_.push_back(engine.pool().get(tuning().chunk_bytes));
    owned_slots_ = free_slots_;
    recv_done_.assign(recvs.size(), 0);
    send_done_.assign(sends.size(), 0);
    slot_of_.assign(recvs.size(), nullptr);
    where_ = work->what();
    post();
    // The local copy after the first messages are out: peers start pulling meanwhile. Nothing
    // posted reads copy_dst or writes copy_src.
    if (copy_bytes && copy_dst != copy_src) std::memmove(copy_dst, copy_src, copy_bytes);
    note_stall();
  }

  bool advance(Engine&, bool& progressed) override {
    int n = recv_pending_.test(where_, [&](int i) { on_recv(i); });
    n += send_pending_.test(where_, [&](int i) {
      send_done_[i] = 1;
      ++sends_complete_;
      while (sends_prefix_ < sends.size() && send_done_[sends_prefix_]) ++sends_prefix_;
    });
    if (n) {
      progressed = true;
      post();
      note_stall();
    }
    return recvs_complete_ == recvs.size() && sends_complete_ == sends.size();
  }

  void release(Engine& engine) override {
    for (char* s : owned_slots_) engine.pool().put(s);
    owned_slots_.clear();
    free_slots_.clear();
  }

 private:
  void on_recv(int i) {
    Recv& r = recvs[i];
    if (r.local) {
      reduce_elements(r.dst, r.local, slot_of_[i], r.elems, dt_, op_, r.streaming);
      free_slots_.push_back(slot_of_[i]);
    }
    recv_done_[i] = 1;
    ++recvs_complete_;
  }

  // The oldest receive and send not yet complete, for a timed-out waiter's message.
  void note_stall() {
    Stall* st = work->stall().get();
    if (!st) return;
    while (first_open_recv_ < recvs.size() && recv_done_[first_open_recv_]) ++first_open_recv_;
    st->recv_from = first_open_recv_ < recvs.size() ? recvs[first_open_recv_].peer : -1;
    st->send_to = sends_prefix_ < sends.size() ? sends[sends_prefix_].peer : -1;
  }

  void post() {
    int window = tuning().window;
    while (next_recv_ < recvs.size() && (int)recv_pending_.size() < window) {
      Recv& r = recvs[next_recv_];
      if ((size_t)r.after_sends > sends_prefix_) break;
      char* dst = r.dst;
      if (r.local) {
        if (free_slots_.empty()) break;
        dst = slot_of_[next_recv_] = free_slots_.back();
        free_slots_.pop_back();
      }
      MPI_Request req;
      ZT_MPI(MPI_Irecv(dst, r.bytes, MPI_BYTE, r.peer, tag_, comm_, &req), where_);
      recv_pending_.add(req, (int)next_recv_++);
    }
    while (next_send_ < sends.size() && (int)send_pending_.size() < window) {
      Send& s = sends[next_send_];
      if (s.after_recv >= 0 && !recv_done_[s.after_recv]) break;
      MPI_Request req;
      ZT_MPI(MPI_Isend(s.ptr, s.bytes, MPI_BYTE, s.peer, tag_, comm_, &req), where_);
      send_pending_.add(req, (int)next_send_++);
    }
  }

  MPI_Comm comm_;
  int tag_;
  DType dt_;
  ReduceOp op_;
  std::string where_;
  std::vector<char*> free_slots_, owned_slots_, slot_of_;
  std::vector<char> recv_done_, send_done_;
  Pending recv_pending_, send_pending_;
  size_t next_recv_ = 0, next_send_ = 0, recvs_complete_ = 0, sends_complete_ = 0;
  size_t sends_prefix_ = 0, first_open_recv_ = 0;
};

// A schedule whose partial sums live in an engine scratch buffer (reduce-scatter, n > 2).
class ScratchSchedule : public Schedule {
 public:
  using Schedule::Schedule;
  // Receives and sends that name a partial hold offsets into the scratch until start().
  std::vector<int> recv_in_scratch, send_in_scratch;

  void start(Engine& engine) override {
    if (scratch_bytes) {
      scratch = engine.pool().get(scratch_bytes);
      for (int i : recv_in_scratch) recvs[i].dst = scratch + (size_t)recvs[i].dst;
      for (int i : send_in_scratch) sends[i].ptr = scratch + (size_t)sends[i].ptr;
    }
    Schedule::start(engine);
  }
  void release(Engine& engine) override {
    engine.pool().put(scratch);
    scratch = nullptr;
    Schedule::release(engine);
  }
};

class BarrierOp : public MpiOp {
 public:
  explicit BarrierOp(MPI_Comm comm) : comm_(comm) {}
  void start(Engine&) override { ZT_MPI(MPI_Ibarrier(comm_, &req_), work->what()); }
  bool advance(Engine&, bool& progressed) override {
    int flag = 0;
    ZT_MPI(MPI_Test(&req_, &flag, MPI_STATUS_IGNORE), work->what());
    progressed |= flag != 0;
    return flag != 0;
  }

 private:
  MPI_Comm comm_;
  MPI_Request req_ = MPI_REQUEST_NULL;
};

// The MPI library's own non-blocking all-gather (ZT_COMM_ALLGATHER=mpi), progressed by the thread.
class BuiltinAllGatherOp : public MpiOp {
 public:
  BuiltinAllGatherOp(MPI_Comm comm, const void* send, void* recv, std::vector<int> counts,
                     std::vector<int> displs, int me)
      : comm_(comm),
        send_(send),
        recv_(recv),
        counts_(std::move(counts)),
        displs_(std::move(displs)),
        me_(me) {}
  void start(Engine&) override {
    // MPI_IN_PLACE when the block is already in place, as the ring allows.
    const void* src = send_ == static_cast<char*>(recv_) + displs_[me_] ? MPI_IN_PLACE : send_;
    ZT_MPI(MPI_Iallgatherv(src, counts_[me_], MPI_BYTE, recv_, counts_.data(), displs_.data(),
                           MPI_BYTE, comm_, &req_),
           work->what());
  }
  bool advance(Engine&, bool& progressed) override {
    int flag = 0;
    ZT_MPI(MPI_Test(&req_, &flag, MPI_STATUS_IGNORE), work->what());
    progressed |= flag != 0;
    return flag != 0;
  }

 private:
  MPI_Comm comm_;
  const void* send_;
  void* recv_;
  std::vector<int> counts_, displs_;
  int me_;
  MPI_Request req_ = MPI_REQUEST_NULL;
};

// ---- schedule builders
// ------------------------------------------------------------------------------
struct Blocks {
  std::vector<size_t> count, offset;  // elements
  explicit Blocks(std::span<const size_t> counts) : count(counts.begin(), counts.end()) {
    offset.resize(count.size());
    size_t o = 0;
    for (size_t i = 0; i < count.size(); ++i) offset[i] = o, o += count[i];
  }
  size_t max() const { return count.empty() ? 0 : *std::max_element(count.begin(), count.end()); }
};

inline size_t chunks_of(size_t elems, size_t chunk) { return (elems + chunk - 1) / chunk; }
inline int mod(int a, int n) { return ((a % n) + n) % n; }

// Ring reduce-scatter into `sched`. Step s: send block (r-s-1), receive block (r-s-2), both mod n.
// partial(s, b) is where the sum of step s for block b goes (final: s == n-2, block r).
// Returns the index of the first receive of the last step, whose chunks hold the final block.
template <typename PartialDst>
void build_ring_reduce(Schedule& sched, int r, int n, const char* send, const Blocks& blocks,
                       size_t es, PartialDst partial, std::vector<int>* send_in_scratch,
                       std::vector<int>* recv_in_scratch, bool streaming_final) {
  size_t chunk = std::max<size_t>(1, tuning().chunk_bytes / es);
  int left = mod(r - 1, n), right = mod(r + 1, n);
  std::vector<int> prev_first_recv;  // per step: index of its first receive
  for (int s = 0; s + 1 < n; ++s) {
    int sb = mod(r - s - 1, n), rb = mod(r - s - 2, n);
    size_t first_recv = sched.recvs.size();
    for (size_t c = 0; c < chunks_of(blocks.count[sb], chunk); ++c) {
      size_t len = std::min(chunk, blocks.count[sb] - c * chunk);
      Schedule::Send m{right, nullptr, (int)(len * es), -1};
      if (s == 0) {
        m.ptr = send + (blocks.offset[sb] + c * chunk) * es;
      } else {
        auto [ptr, in_scratch] = partial(s - 1, sb, c * chunk);
        m.ptr = ptr;
        m.after_recv = prev_first_recv.back() + (int)c;
        if (in_scratch && send_in_scratch) send_in_scratch->push_back((int)sched.sends.size());
      }
      sched.sends.push_back(m);
    }
    for (size_t c = 0; c < chunks_of(blocks.count[rb], chunk); ++c) {
      size_t len = std::min(chunk, blocks.count[rb] - c * chunk);
      auto [dst, in_scratch] = partial(s, rb, c * chunk);
      Schedule::Recv m{left, dst, (int)(len * es)};
      m.local = send + (blocks.offset[rb] + c * chunk) * es;
      m.elems = len;
      m.streaming = streaming_final && s == n - 2;
      if (in_scratch && recv_in_scratch) recv_in_scratch->push_back((int)sched.recvs.size());
      sched.recvs.push_back(m);
    }
    prev_first_recv.push_back((int)first_recv);
  }
}

// Ring all-gather into `out` (blocks at their offsets). Block r must already be in out, or be
// sent from `own` (own != nullptr) at step 0. When own_ready >= 0 (all-reduce: the receives of the
// last reduce-scatter step, in chunks of `ready_chunk` elements), a step-0 send waits for the last
// of those receives it covers; receives wait for the first
// `after_sends` sends (all-reduce: every reduce-scatter send, whose partials live in out).
void build_ring_gather(Schedule& sched, int r, int n, const char* own, char* out,
                       const Blocks& blocks, size_t es, size_t chunk, int own_ready,
                       size_t ready_chunk, int after_sends) {
  int left = mod(r - 1, n), right = mod(r + 1, n);
  int prev_first_recv = -1;
  for (int s = 0; s + 1 < n; ++s) {
    int sb = mod(r - s, n), rb = mod(r - s - 1, n);
    int first_recv = (int)sched.recvs.size();
    for (size_t c = 0; c < chunks_of(blocks.count[sb], chunk); ++c) {
      size_t len = std::min(chunk, blocks.count[sb] - c * chunk);
      Schedule::Send m{right, out + (blocks.offset[sb] + c * chunk) * es, (int)(len * es), -1};
      if (s == 0) {
        if (own) m.ptr = own + c * chunk * es;
        if (own_ready >= 0) {
          size_t end = std::min((c + 1) * chunk, blocks.count[sb]);  // elements this send covers
          m.after_recv = own_ready + (int)(chunks_of(end, ready_chunk) - 1);
        }
      } else {
        m.after_recv = prev_first_recv + (int)c;
      }
      sched.sends.push_back(m);
    }
    for (size_t c = 0; c < chunks_of(blocks.count[rb], chunk); ++c) {
      size_t len = std::min(chunk, blocks.count[rb] - c * chunk);
      Schedule::Recv m{left, out + (blocks.offset[rb] + c * chunk) * es, (int)(len * es)};
      m.after_sends = after_sends;
      sched.recvs.push_back(m);
    }
    prev_first_recv = first_recv;
  }
}

// Cuts `bytes` into messages of at most `chunk` bytes.
template <typename F>
void for_chunks(size_t bytes, size_t chunk, F&& f) {
  for (size_t o = 0; o < bytes; o += chunk) f(o, std::min(chunk, bytes - o));
}

std::string human_count(size_t count, DType dt) { return cat(count, " ", dtype_name(dt)); }

// ---- the communicator
// -------------------------------------------------------------------------------
class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `base` (a communicator of its own, not MPI_COMM_WORLD).
  MpiCommunicator(MPI_Comm base, int rank, int size, const std::string& name)
      : Communicator(rank, size, name, "mpi"), admin_(base), engine_(Engine::get()) {
    std::string where = cat("communicator '", name, "'");
    ZT_MPI(MPI_Comm_set_errhandler(admin_, MPI_ERRORS_RETURN), where);
    ZT_MPI(MPI_Comm_dup(admin_, &coll_), where);
    ZT_MPI(MPI_Comm_dup(admin_, &p2p_), where);
    ZT_MPI(MPI_Comm_set_errhandler(coll_, MPI_ERRORS_RETURN), where);
    ZT_MPI(MPI_Comm_set_errhandler(p2p_, MPI_ERRORS_RETURN), where);
    void* ub = nullptr;
    int found = 0;
    MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &found);
    tag_space_ = found ? std::min(*static_cast<int*>(ub), 1 << 24) : 32767;
    // World ranks of this group, for messages that name a peer.
    MPI_Group world_group, group;
    MPI_Comm_group(MPI_COMM_WORLD, &world_group);
    MPI_Comm_group(admin_, &group);
    std::vector<int> mine(size), world(size);
    for (int i = 0; i < size; ++i) mine[i] = i;
    MPI_Group_translate_ranks(group, size, mine.data(), world_group, world.data());
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
    world_ranks_ = world;
  }

  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    // Unwound by an exception, operations may still be running on these communicators.
    if (std::uncaught_exceptions() > 0) stop_engine();
    MPI_Comm_free(&coll_);
    MPI_Comm_free(&p2p_);
    MPI_Comm_free(&admin_);
  }

  Work all_reduce(const void* send, void* recv, size_t count, DType dt, ReduceOp op) override {
    check_reducible(*this, "all_reduce", dt);
    int n = size(), r = rank();
    size_t es = dtype_size(dt);
    Blocks blocks(shard_counts(count, n));
    auto sched = make_schedule<Schedule>("all_reduce", count, dt, op, peers_ring());
    const char* in = static_cast<const char*>(send);
    char* out = static_cast<char*>(recv);
    // Partial sums of the reduce-scatter live in `out` at their block's place: the all-gather
    // overwrites them only after every send that reads them is complete.
    build_ring_reduce(
        *sched, r, n, in, blocks, es,
        [&](int, int b, size_t at) {
          return std::pair{out + (blocks.offset[b] + at) * es, false};
        },
        nullptr, nullptr, tuning().streaming);
    // The all-gather's first sends wait for the receives of the last reduce-scatter step that
    // produce their part of block r; it moves whole multiples of the reduce chunk.
    size_t chunk = std::max<size_t>(1, tuning().chunk_bytes / es);
    size_t gather_chunk =
        chunk * std::max<size_t>(1, tuning().copy_chunk_bytes / tuning().chunk_bytes);
    int last_step_recv = (int)(sched->recvs.size() - chunks_of(blocks.count[r], chunk));
    build_ring_gather(*sched, r, n, nullptr, out, blocks, es, gather_chunk, last_step_recv, chunk,
                      (int)sched->sends.size());
    return submit(std::move(sched), CommKind::allreduce);
  }

  Work reduce_scatter(const void* send, void* recv, std::span<const size_t> counts, DType dt,
                      ReduceOp op) override {
    check_reducible(*this, "reduce_scatter", dt);
    check_counts(*this, "reduce_scatter", counts);
    int n = size(), r = rank();
    size_t es = dtype_size(dt);
    Blocks blocks(counts);
    auto sched =
        make_schedule<ScratchSchedule>("reduce_scatter", sum_counts(counts), dt, op, peers_ring());
    const char* in = static_cast<const char*>(send);
    char* out = static_cast<char*>(recv);
    size_t maxb = blocks.max();
    // Step s < n-2 keeps its partial in scratch region s; the last step writes `recv`.
    sched->scratch_bytes = n > 2 ? (size_t)(n - 2) * maxb * es : 0;
    build_ring_reduce(
        *sched, r, n, in, blocks, es,
        [&](int s, int, size_t at) {
          if (s == n - 2) return std::pair{out + at * es, false};
          return std::pair{reinterpret_cast<char*>(((size_t)s * maxb + at) * es), true};
        },
        &sched->send_in_scratch, &sched->recv_in_scratch, tuning().streaming);
    return submit(std::move(sched), CommKind::reduce_scatter);
  }

  Work all_gather(const void* send, void* recv, std::span<const size_t> counts, DType dt) override {
    check_counts(*this, "all_gather", counts);
    int r = rank();
    size_t es = dtype_size(dt);
    Blocks blocks(counts);
    if (tuning().builtin_allgather && (sum_counts(counts) * es) < (1ull << 31)) {
      std::vector<int> c(size()), d(size());
      for (int i = 0; i < size(); ++i)
        c[i] = (int)(blocks.count[i] * es), d[i] = (int)(blocks.offset[i] * es);
      auto op = std::make_unique<BuiltinAllGatherOp>(coll_, send, recv, c, d, r);
      op->work =
          std::make_shared<MpiWork>(describe("all_gather", sum_counts(counts), dt), peers_ring());
      count_bytes(CommKind::allgather,
                  (int64_t)((sum_counts(counts) - blocks.count[(r + 1) % size()]) * es));
      Work w = make_work(op->work);
      engine_.submit(std::move(op));
      return w;
    }
    auto sched =
        make_schedule<Schedule>("all_gather", sum_counts(counts), dt, ReduceOp::sum, peers_ring());
    char* out = static_cast<char*>(recv);
    sched->copy_dst = out + blocks.offset[r] * es;
    sched->copy_src = static_cast<const char*>(send);
    sched->copy_bytes = blocks.count[r] * es;
    size_t chunk = std::max<size_t>(1, tuning().copy_chunk_bytes / es);
    build_ring_gather(*sched, r, size(), static_cast<const char*>(send), out, blocks, es, chunk, -1,
                      1, 0);
    return submit(std::move(sched), CommKind::allgather);
  }

  Work broadcast(void* buf, size_t count, DType dt, int root) override {
    check_peer(*this, "broadcast", root);
    int n = size(), r = rank();
    int pos = mod(r - root, n);
    int prev = mod(r - 1, n), next = mod(r + 1, n);
    auto sched =
        make_schedule<Schedule>("broadcast", count, dt, ReduceOp::sum, neighbours(prev, next));
    char* p = static_cast<char*>(buf);
    size_t bytes = count * dtype_size(dt);
    int i = 0;
    for_chunks(bytes, tuning().copy_chunk_bytes, [&](size_t o, size_t len) {
      if (pos > 0) sched->recvs.push_back({prev, p + o, (int)len});
      if (pos < n - 1) sched->sends.push_back({next, p + o, (int)len, pos > 0 ? i : -1});
      ++i;
    });
    return submit(std::move(sched), CommKind::broadcast);
  }

  Work all_to_all(const void* send, std::span<const size_t> send_counts, void* recv,
                  std::span<const size_t> recv_counts, DType dt) override {
    check_counts(*this, "all_to_all", send_counts);
    check_counts(*this, "all_to_all", recv_counts);
    int n = size(), r = rank();
    size_t es = dtype_size(dt);
    Blocks sb(send_counts), rb(recv_counts);
    if (send_counts[r] != recv_counts[r])
      fail("all_to_all on communicator '", name(), "': rank ", r, " sends ", send_counts[r],
           " elements to itself but expects ", recv_counts[r]);
    auto sched = make_schedule<Schedule>("all_to_all", sum_counts(send_counts), dt, ReduceOp::sum,
                                         "all ranks of the communicator");
    const char* in = static_cast<const char*>(send);
    char* out = static_cast<char*>(recv);
    sched->copy_dst = out + rb.offset[r] * es;
    sched->copy_src = in + sb.offset[r] * es;
    sched->copy_bytes = sb.count[r] * es;
    for (int k = 1; k < n; ++k) {  // pairwise: step k sends to r+k, receives from r-k
      int to = mod(r + k, n), from = mod(r - k, n);
      for_chunks(sb.count[to] * es, tuning().copy_chunk_bytes, [&](size_t o, size_t len) {
        sched->sends.push_back({to, in + sb.offset[to] * es + o, (int)len, -1});
      });
      for_chunks(rb.count[from] * es, tuning().copy_chunk_bytes, [&](size_t o, size_t len) {
        sched->recvs.push_back({from, out + rb.offset[from] * es + o, (int)len});
      });
    }
    return submit(std::move(sched), CommKind::alltoall);
  }

  Work send(const void* buf, size_t count, DType dt, int peer, int tag) override {
    check_peer(*this, "send", peer);
    check_tag("send", tag);
    auto sched = std::make_unique<Schedule>(p2p_, tag, dt, ReduceOp::sum);
    sched->work = std::make_shared<MpiWork>(describe("send", count, dt) + cat(" to rank ", peer),
                                            cat("world rank ", world_ranks_[peer]), make_stall());
    for_chunks(count * dtype_size(dt), tuning().copy_chunk_bytes, [&](size_t o, size_t len) {
      sched->sends.push_back({peer, static_cast<const char*>(buf) + o, (int)len, -1});
    });
    return submit(std::move(sched), CommKind::p2p);
  }

  Work recv(void* buf, size_t count, DType dt, int peer, int tag) override {
    check_peer(*this, "recv", peer);
    check_tag("recv", tag);
    auto sched = std::make_unique<Schedule>(p2p_, tag, dt, ReduceOp::sum);
    sched->work = std::make_shared<MpiWork>(describe("recv", count, dt) + cat(" from rank ", peer),
                                            cat("world rank ", world_ranks_[peer]), make_stall());
    for_chunks(count * dtype_size(dt), tuning().copy_chunk_bytes, [&](size_t o, size_t len) {
      sched->recvs.push_back({peer, static_cast<char*>(buf) + o, (int)len});
    });
    return submit(std::move(sched), CommKind::p2p);
  }

  Work barrier() override {
    auto op = std::make_unique<BarrierOp>(coll_);
    op->work = std::make_shared<MpiWork>(describe("barrier", 0, DType::int8),
                                         "all ranks of the communicator");
    Work w = make_work(op->work);
    engine_.submit(std::move(op));
    return w;
  }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    if (color < 0) fail("split of communicator '", this->name(), "': color ", color, " < 0");
    MPI_Comm comm;
    ZT_MPI(MPI_Comm_split(admin_, color, key, &comm),
           cat("split of communicator '", this->name(), "'"));
    int r = 0, n = 0;
    MPI_Comm_rank(comm, &r);
    MPI_Comm_size(comm, &n);
    if (n == 1) {
      MPI_Comm_free(&comm);
      return make_local_communicator(name);
    }
    return std::make_unique<MpiCommunicator>(comm, r, n, name);
  }

 private:
  int next_tag() { return (int)(seq_++ % (uint64_t)tag_space_); }

  std::string describe(const char* op, size_t count, DType dt) const {
    return cat(op, " on communicator '", name(), "' (rank ", rank(), " of ", size(),
               count ? ", " + human_count(count, dt) : std::string(), ")");
  }

  std::shared_ptr<Stall> make_stall() const {
    auto st = std::make_shared<Stall>();
    st->world_ranks = world_ranks_;
    return st;
  }

  std::string peers_ring() const {
    return neighbours(mod(rank() - 1, size()), mod(rank() + 1, size()));
  }
  std::string neighbours(int a, int b) const {
    if (world_ranks_[a] == world_ranks_[b]) return cat("world rank ", world_ranks_[a]);
    return cat("world ranks ", world_ranks_[a], " and ", world_ranks_[b]);
  }

  void check_tag(const char* what, int tag) const {
    if (tag < 0 || tag >= tag_space_)
      fail(what, " on communicator '", name(), "': tag ", tag, " is not in 0..", tag_space_ - 1);
  }

  // A collective: the next tag of this communicator, on the collective MPI communicator.
  template <typename S>
  std::unique_ptr<S> make_schedule(const char* what, size_t count, DType dt, ReduceOp op,
                                   const std::string& peers) {
    auto s = std::make_unique<S>(coll_, next_tag(), dt, op);
    s->work = std::make_shared<MpiWork>(describe(what, count, dt), peers, make_stall());
    return s;
  }

  Work submit(std::unique_ptr<Schedule> sched, CommKind kind) {
    count_bytes(kind, sched->bytes_sent());
    Work w = make_work(sched->work);
    engine_.submit(std::move(sched));
    return w;
  }

  MPI_Comm admin_, coll_ = MPI_COMM_NULL, p2p_ = MPI_COMM_NULL;
  Engine& engine_;
  int tag_space_ = 32767;
  std::atomic<uint64_t> seq_{0};
  std::vector<int> world_ranks_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_world_communicator() {
  int initialised = 0, finalized = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalized);
  if (!initialised || finalized) fail("the MPI backend needs MPI initialised by a ProcessContext");
  MPI_Comm comm;
  ZT_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "world communicator");
  int r = 0, n = 0;
  MPI_Comm_rank(comm, &r);
  MPI_Comm_size(comm, &n);
  return std::make_unique<MpiCommunicator>(comm, r, n, "world");
}

}  // namespace zt
