// comm.h: the Communicator interface every distributed part of zerotrain talks through.
//
// A Communicator is a group of ranks (the world, or a dp/tp/pp/ep group of the ProcessGrid).
// Every call is asynchronous: it queues the operation and returns a Work handle at once; the
// buffers must stay untouched (sent) or unread (received) until the Work completes. Operations of
// one communicator must be issued in the same order on every rank of it (as with MPI); any number
// may be outstanding and they may be waited on in any order.
//
// Element counts are per call and may be anything, 0 and uneven splits included. Buffers hold
// fp32, bf16 or fp16 values (int8 for byte payloads that are not reduced); bf16 and fp16 are
// reduced in fp32 and rounded back to 16 bits once per hop (the MPI ring: n-1 roundings).
// Pointers are host memory for the MPI backend, device memory for the NCCL backend.
//
// Counters (SPEC section 4 `comm`): every operation adds the bytes THIS rank sends, by kind, to
// the communicator's stats and to the process-wide comm_stats(); Work::wait() adds the time the
// caller spent blocked in it as exposed time. Bytes sent by the ring algorithms, N the whole
// buffer in bytes and n ranks: all_reduce 2N(n-1)/n, reduce_scatter and all_gather N(n-1)/n
// (the blocks this rank forwards), broadcast N on every rank that forwards, all_to_all the blocks
// for other ranks, send its bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/dtype.h"

namespace zt {

enum class ReduceOp { sum, max };

enum class CommKind : int {
  allgather = 0,
  reduce_scatter,
  allreduce,
  p2p,
  alltoall,
  broadcast,
  control,  // small exchanges of values, whatever collective carries them (ControlTraffic)
  count
};
const char* comm_kind_name(CommKind k);  // "allgather", "reduce_scatter", ...

// While one is alive on a thread, the operations that thread issues count as CommKind::control:
// the exchanges of a few values every rank needs (the losses, the gradient norm, agreement
// flags, the metrics' maxima; parallel/comm/gather.h). So the other kinds are the model's
// traffic, which a layout's formulas predict (parallel/plan/), and the control bytes are shown
// on their own.
class ControlTraffic {
 public:
  ControlTraffic();
  ~ControlTraffic();
  ControlTraffic(const ControlTraffic&) = delete;
  ControlTraffic& operator=(const ControlTraffic&) = delete;

 private:
  bool outer_;
};

struct CommStats {
  int64_t bytes[(int)CommKind::count] = {};
  double exposed_ms = 0;  // time spent blocked in Work::wait()
  CommStats operator-(const CommStats& o) const;
};
CommStats comm_stats();  // process-wide, since start

// Thread-safe running totals behind CommStats (one per communicator, one process-wide).
struct CommCounters;

// The completion side of one operation; backends derive from it.
struct WorkImpl {
  virtual ~WorkImpl() = default;
  virtual void wait() = 0;  // returns when done; throws zt::Error if the operation failed
  virtual bool test() = 0;  // done? (throws like wait when it failed)
  // An exception is unwinding past the operation while it is in flight: its buffers are about to
  // be freed. The MPI backend stops its thread (this rank's communication is over; later calls
  // fail with an error) so nothing touches them.
  virtual void abandon() {}
};

class Work {
 public:
  Work() = default;  // an empty handle: already complete
  Work(std::shared_ptr<WorkImpl> impl, std::shared_ptr<CommCounters> counters);
  Work(const Work&) = default;
  Work(Work&&) = default;
  Work& operator=(const Work&) = default;
  Work& operator=(Work&&) = default;
  ~Work();  // while an exception unwinds: abandon() the operation if it is still in flight
  // Blocks until the operation is complete (a condition variable, never a spin) and returns the
  // milliseconds it waited, which are also added to the exposed time. The MPI backend aborts the
  // job when one wait exceeds ZT_COMM_TIMEOUT_S seconds (default 600; 0 = wait forever).
  // NCCL: orders the communicator's compute stream after the operation; the host does not block.
  double wait();
  bool test();
  bool valid() const { return impl_ != nullptr; }

 private:
  std::shared_ptr<WorkImpl> impl_;
  std::shared_ptr<CommCounters> counters_;
};

double wait_all(std::span<Work> works);  // waits on each; returns the total ms waited

class Communicator {
 public:
  virtual ~Communicator() = default;
  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& name() const { return name_; }
  const char* backend() const { return backend_; }  // "local" | "mpi" | "nccl"
  CommStats stats() const;

  // recv[i] = op over ranks of send[i], count elements; send == recv (in place) is fine.
  virtual Work all_reduce(const void* send, void* recv, size_t count, DType dt, ReduceOp op) = 0;
  // send holds sum(counts) elements in rank order; recv gets this rank's counts[rank()] elements
  // of the reduction. send + offset(rank) == recv is fine.
  virtual Work reduce_scatter(const void* send, void* recv, std::span<const size_t> counts,
                              DType dt, ReduceOp op) = 0;
  // recv gets every rank's block (counts[r] elements each, in rank order); send holds this
  // rank's counts[rank()] elements and may point at its place inside recv.
  virtual Work all_gather(const void* send, void* recv, std::span<const size_t> counts,
                          DType dt) = 0;
  virtual Work broadcast(void* buf, size_t count, DType dt, int root) = 0;
  // send holds send_counts[r] elements for each rank r in rank order; recv gets recv_counts[r]
  // from each rank r in rank order. Every rank's send_counts[j] equals rank j's recv_counts[i].
  virtual Work all_to_all(const void* send, std::span<const size_t> send_counts, void* recv,
                          std::span<const size_t> recv_counts, DType dt) = 0;
  // Point to point: matched by (peer, tag) in issue order. Tags are >= 0.
  virtual Work send(const void* buf, size_t count, DType dt, int peer, int tag) = 0;
  virtual Work recv(void* buf, size_t count, DType dt, int peer, int tag) = 0;
  virtual Work barrier() = 0;

  // Even-split conveniences: `count` is the whole buffer, blocks as even_split_counts(count,
  // size()) (runtime/split.h).
  Work reduce_scatter(const void* send, void* recv, size_t count, DType dt, ReduceOp op);
  Work all_gather(const void* send, void* recv, size_t count, DType dt);

  // A new communicator over the ranks of this one that pass the same `color`, ordered by `key`
  // (then by rank here). Collective: every rank of this communicator calls it, in the same order
  // as its other operations. Groups of one rank get the local backend.
  virtual std::unique_ptr<Communicator> split(int color, int key, const std::string& name) = 0;

 protected:
  Communicator(int rank, int size, std::string name, const char* backend);
  void count_bytes(CommKind kind, int64_t bytes);  // this communicator and process-wide
  Work make_work(std::shared_ptr<WorkImpl> impl) const { return Work(std::move(impl), counters_); }

 private:
  int rank_, size_;
  std::string name_;
  const char* backend_;
  std::shared_ptr<CommCounters> counters_;
};

// The world communicator of this process: MPI when a launcher started it (ProcessContext::mpi()),
// else a one-rank local communicator. Needs a live ProcessContext.
std::unique_ptr<Communicator> make_world_communicator();
std::unique_ptr<Communicator> make_local_communicator(const std::string& name);

// NCCL over the ranks of `bootstrap` (its rank order; the unique id travels by its broadcast),
// device buffers, operations on a side stream ordered after `compute` (see comm_nccl.cpp).
// Builds without ZT_CUDA raise zt::Error.
struct Stream;
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, Stream* compute);
std::string nccl_version();  // "2.21.5"; "" in a build without CUDA

// The longest one Work::wait may block before the job is aborted naming the operation and the
// ranks it waits for (MPI backend): seconds, 0 = forever. Default ZT_COMM_TIMEOUT_S, else 600;
// `train --comm-timeout` sets it (default 300).
void set_comm_timeout(double seconds);
double comm_timeout_s();

}  // namespace zt
