// mpi_plan_op.cpp: the MPI state machine of a message plan (mpi_plan_op.h).
#include "parallel/comm/mpi_plan_op.h"

#include <algorithm>
#include <cstring>

#include "parallel/comm/mpi_tuning.h"
#include "parallel/comm/reduce.h"

namespace zt {
namespace {

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

class PlanOp : public MpiOp {
 public:
  PlanOp(MessagePlan plan, MPI_Comm comm, int tag)
      : plan_(std::move(plan)), comm_(comm), tag_(tag) {}

  void start(ProgressThread& thread) override {
    if (plan_.scratch_bytes) {
      scratch_ = thread.pool().get(plan_.scratch_bytes);
      plan_.bind_scratch(scratch_);
    }
    // Receive slots as large as the largest reducing message (a small operation's messages are
    // far below ZT_COMM_CHUNK_KB, and its slots stay in the pool).
    const int slots = std::min(plan_.reducing_recvs(), mpi_tuning().slots);
    size_t slot_bytes = 0;
    for (const MessagePlan::Recv& r : plan_.recvs)
      if (r.local) slot_bytes = std::max(slot_bytes, (size_t)r.bytes);
    for (int i = 0; i < slots; ++i) free_slots_.push_back(thread.pool().get(slot_bytes));
    owned_slots_ = free_slots_;
    recv_done_.assign(plan_.recvs.size(), 0);
    send_done_.assign(plan_.sends.size(), 0);
    slot_of_.assign(plan_.recvs.size(), nullptr);
    where_ = work->what();
    post();
    // The local copy after the first messages are out: peers start pulling meanwhile.
    if (plan_.copy_bytes && plan_.copy_dst != plan_.copy_src)
      std::memmove(plan_.copy_dst, plan_.copy_src, plan_.copy_bytes);
    note_stall();
  }

  bool advance(ProgressThread&, bool& progressed) override {
    int n = recv_pending_.test(where_, [&](int i) { on_recv(i); });
    n += send_pending_.test(where_, [&](int i) {
      send_done_[i] = 1;
      ++sends_complete_;
      while (sends_prefix_ < plan_.sends.size() && send_done_[sends_prefix_]) ++sends_prefix_;
    });
    if (n) {
      progressed = true;
      post();
      note_stall();
    }
    return recvs_complete_ == plan_.recvs.size() && sends_complete_ == plan_.sends.size();
  }

  void release(ProgressThread& thread) override {
    for (char* s : owned_slots_) thread.pool().put(s);
    owned_slots_.clear();
    free_slots_.clear();
    thread.pool().put(scratch_);
    scratch_ = nullptr;
  }

 private:
  void on_recv(int i) {
    MessagePlan::Recv& r = plan_.recvs[i];
    if (r.local) {
      reduce_elements(r.dst, r.local, slot_of_[i], r.elems, plan_.dt, plan_.op, r.streaming);
      free_slots_.push_back(slot_of_[i]);
    }
    recv_done_[i] = 1;
    ++recvs_complete_;
  }

  // The oldest receive and send not yet complete, for a timed-out waiter's message.
  void note_stall() {
    Stall* st = work->stall().get();
    if (!st) return;
    while (first_open_recv_ < plan_.recvs.size() && recv_done_[first_open_recv_])
      ++first_open_recv_;
    st->recv_from = first_open_recv_ < plan_.recvs.size() ? plan_.recvs[first_open_recv_].peer : -1;
    st->send_to = sends_prefix_ < plan_.sends.size() ? plan_.sends[sends_prefix_].peer : -1;
  }

  void post() {
    const int window = mpi_tuning().window;
    while (next_recv_ < plan_.recvs.size() && (int)recv_pending_.size() < window) {
      MessagePlan::Recv& r = plan_.recvs[next_recv_];
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
    while (next_send_ < plan_.sends.size() && (int)send_pending_.size() < window) {
      MessagePlan::Send& s = plan_.sends[next_send_];
      if (s.after_recv >= 0 && !recv_done_[s.after_recv]) break;
      MPI_Request req;
      ZT_MPI(MPI_Isend(s.ptr, s.bytes, MPI_BYTE, s.peer, tag_, comm_, &req), where_);
      send_pending_.add(req, (int)next_send_++);
    }
  }

  MessagePlan plan_;
  MPI_Comm comm_;
  int tag_;
  std::string where_;
  char* scratch_ = nullptr;
  std::vector<char*> free_slots_, owned_slots_, slot_of_;
  std::vector<char> recv_done_, send_done_;
  Pending recv_pending_, send_pending_;
  size_t next_recv_ = 0, next_send_ = 0, recvs_complete_ = 0, sends_complete_ = 0;
  size_t sends_prefix_ = 0, first_open_recv_ = 0;
};

}  // namespace

std::unique_ptr<MpiOp> make_plan_op(MessagePlan plan, MPI_Comm comm, int tag) {
  return std::make_unique<PlanOp>(std::move(plan), comm, tag);
}

}  // namespace zt
