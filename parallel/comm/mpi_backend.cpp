// mpi_backend.cpp: the MPI backend of Communicator.
//
// Why not the MPI collectives: Open MPI 4.1's MPI_Reduce_scatter_block and MPI_Allreduce run at
// 0.1-1.5 GB/s on the development machine (ARCHITECTURE.md). Every operation here is a message
// plan (ring_plans.h) of MPI_Isend / MPI_Irecv of bytes that the process's progress thread runs
// (mpi_progress.h, mpi_plan_op.h). Open MPI moves large messages between processes on one node
// with a single copy (CMA) done by the receiver.
//
// Every communicator owns three MPI communicators: one for its collectives (the tag of an
// operation is its sequence number, so outstanding operations never mix), one for send/recv (the
// caller's tags), and one on which the calling thread runs MPI_Comm_split.
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <functional>

#include "parallel/comm/backend.h"
#include "parallel/comm/mpi_plan_op.h"
#include "parallel/comm/mpi_progress.h"
#include "parallel/comm/mpi_tuning.h"
#include "parallel/comm/ring_bytes.h"
#include "parallel/comm/ring_plans.h"
#include "runtime/error.h"

namespace zt {
namespace {

std::string human_count(size_t count, DType dt) { return cat(count, " ", dtype_name(dt)); }

// An operation of the MPI library itself: one non-blocking call, then MPI_Test until it is done.
class LibraryOp : public MpiOp {
 public:
  explicit LibraryOp(std::function<int(MPI_Request*)> call) : call_(std::move(call)) {}
  void start(ProgressThread&) override { ZT_MPI(call_(&req_), work->what()); }
  bool advance(ProgressThread&, bool& progressed) override {
    int flag = 0;
    ZT_MPI(MPI_Test(&req_, &flag, MPI_STATUS_IGNORE), work->what());
    progressed |= flag != 0;
    return flag != 0;
  }

 private:
  std::function<int(MPI_Request*)> call_;
  MPI_Request req_ = MPI_REQUEST_NULL;
};

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `base` (a communicator of its own, not MPI_COMM_WORLD).
  MpiCommunicator(MPI_Comm base, int rank, int size, const std::string& name)
      : Communicator(rank, size, name, "mpi"), admin_(base), thread_(ProgressThread::get()) {
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
    if (std::uncaught_exceptions() > 0) thread_.stop();
    MPI_Comm_free(&coll_);
    MPI_Comm_free(&p2p_);
    MPI_Comm_free(&admin_);
  }

  Work all_reduce(const void* send, void* recv, size_t count, DType dt, ReduceOp op) override {
    check_reducible(*this, "all_reduce", dt);
    return submit(plan_all_reduce(rank(), size(), send, recv, count, dt, op, chunks()),
                  CommKind::allreduce, describe("all_reduce", count, dt), peers_ring());
  }

  Work reduce_scatter(const void* send, void* recv, std::span<const size_t> counts, DType dt,
                      ReduceOp op) override {
    check_reducible(*this, "reduce_scatter", dt);
    check_counts(*this, "reduce_scatter", counts);
    return submit(plan_reduce_scatter(rank(), size(), send, recv, counts, dt, op, chunks()),
                  CommKind::reduce_scatter, describe("reduce_scatter", sum_counts(counts), dt),
                  peers_ring());
  }

  Work all_gather(const void* send, void* recv, std::span<const size_t> counts, DType dt) override {
    check_counts(*this, "all_gather", counts);
    const int r = rank();
    const size_t es = dtype_size(dt);
    if (mpi_tuning().builtin_allgather && (sum_counts(counts) * es) < (1ull << 31)) {
      std::vector<int> c(size()), d(size());
      for (int i = 0, off = 0; i < size(); ++i)
        c[i] = (int)(counts[i] * es), d[i] = off, off += c[i];
      // The MPI library's own non-blocking all-gather (ZT_COMM_ALLGATHER=mpi), MPI_IN_PLACE when
      // the block is already in place, as the ring allows.
      const void* src = send == static_cast<char*>(recv) + d[r] ? MPI_IN_PLACE : send;
      MPI_Comm comm = coll_;
      auto op = std::make_unique<LibraryOp>([=](MPI_Request* req) {
        return MPI_Iallgatherv(src, c[r], MPI_BYTE, recv, c.data(), d.data(), MPI_BYTE, comm, req);
      });
      op->work =
          std::make_shared<MpiWork>(describe("all_gather", sum_counts(counts), dt), peers_ring());
      count_bytes(CommKind::allgather, all_gather_bytes(counts, r, es));
      Work w = make_work(op->work);
      thread_.submit(std::move(op));
      return w;
    }
    return submit(plan_all_gather(r, size(), send, recv, counts, dt, chunks()), CommKind::allgather,
                  describe("all_gather", sum_counts(counts), dt), peers_ring());
  }

  Work broadcast(void* buf, size_t count, DType dt, int root) override {
    check_peer(*this, "broadcast", root);
    const int n = size(), r = rank();
    return submit(plan_broadcast(r, n, buf, count, dt, root, chunks()), CommKind::broadcast,
                  describe("broadcast", count, dt), neighbours((r - 1 + n) % n, (r + 1) % n));
  }

  Work all_to_all(const void* send, std::span<const size_t> send_counts, void* recv,
                  std::span<const size_t> recv_counts, DType dt) override {
    check_counts(*this, "all_to_all", send_counts);
    check_counts(*this, "all_to_all", recv_counts);
    const int r = rank();
    if (send_counts[r] != recv_counts[r])
      fail("all_to_all on communicator '", name(), "': rank ", r, " sends ", send_counts[r],
           " elements to itself but expects ", recv_counts[r]);
    return submit(plan_all_to_all(r, size(), send, send_counts, recv, recv_counts, dt, chunks()),
                  CommKind::alltoall, describe("all_to_all", sum_counts(send_counts), dt),
                  "all ranks of the communicator");
  }

  Work send(const void* buf, size_t count, DType dt, int peer, int tag) override {
    check_peer(*this, "send", peer);
    check_tag("send", tag);
    return submit(plan_send(peer, buf, count, dt, chunks()), CommKind::p2p,
                  describe("send", count, dt) + cat(" to rank ", peer),
                  cat("world rank ", world_ranks_[peer]), p2p_, tag);
  }

  Work recv(void* buf, size_t count, DType dt, int peer, int tag) override {
    check_peer(*this, "recv", peer);
    check_tag("recv", tag);
    return submit(plan_recv(peer, buf, count, dt, chunks()), CommKind::p2p,
                  describe("recv", count, dt) + cat(" from rank ", peer),
                  cat("world rank ", world_ranks_[peer]), p2p_, tag);
  }

  Work barrier() override {
    MPI_Comm comm = coll_;
    auto op =
        std::make_unique<LibraryOp>([comm](MPI_Request* req) { return MPI_Ibarrier(comm, req); });
    op->work = std::make_shared<MpiWork>(describe("barrier", 0, DType::int8),
                                         "all ranks of the communicator");
    Work w = make_work(op->work);
    thread_.submit(std::move(op));
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
    return neighbours((rank() - 1 + size()) % size(), (rank() + 1) % size());
  }
  std::string neighbours(int a, int b) const {
    if (world_ranks_[a] == world_ranks_[b]) return cat("world rank ", world_ranks_[a]);
    return cat("world ranks ", world_ranks_[a], " and ", world_ranks_[b]);
  }

  void check_tag(const char* what, int tag) const {
    if (tag < 0 || tag >= tag_space_)
      fail(what, " on communicator '", name(), "': tag ", tag, " is not in 0..", tag_space_ - 1);
  }

  static PlanChunks chunks() { return mpi_tuning().plan_chunks(); }

  // Counts the plan's bytes and hands it to the progress thread. Collectives take the next tag of
  // this communicator on its collective MPI communicator (outstanding ones never mix);
  // send / recv pass the p2p communicator and the caller's tag.
  Work submit(MessagePlan plan, CommKind kind, std::string what, std::string peers,
              MPI_Comm comm = MPI_COMM_NULL, int tag = -1) {
    if (comm == MPI_COMM_NULL) comm = coll_, tag = next_tag();
    count_bytes(kind, plan.bytes_sent());
    auto op = make_plan_op(std::move(plan), comm, tag);
    op->work = std::make_shared<MpiWork>(std::move(what), std::move(peers), make_stall());
    Work w = make_work(op->work);
    thread_.submit(std::move(op));
    return w;
  }

  MPI_Comm admin_, coll_ = MPI_COMM_NULL, p2p_ = MPI_COMM_NULL;
  ProgressThread& thread_;
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
