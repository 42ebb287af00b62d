// comm.cpp: what every backend shares: counters, Work, shard arithmetic, argument checks, and the
// one-rank local backend.
#include "parallel/comm.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>

#include "parallel/comm_internal.h"
#include "runtime/error.h"
#include "runtime/process.h"

namespace zt {

struct CommCounters {
  std::atomic<int64_t> bytes[(int)CommKind::count] = {};
  std::atomic<int64_t> exposed_ns{0};
  CommStats snapshot() const {
    CommStats s;
    for (int k = 0; k < (int)CommKind::count; ++k) s.bytes[k] = bytes[k].load();
    s.exposed_ms = (double)exposed_ns.load() / 1e6;
    return s;
  }
};

namespace {
CommCounters& global_counters() {
  static CommCounters c;
  return c;
}
}  // namespace

const char* comm_kind_name(CommKind k) {
  static const char* names[] = {"allgather", "reduce_scatter", "allreduce",
                                "p2p",       "alltoall",       "broadcast"};
  return names[(int)k];
}

CommStats CommStats::operator-(const CommStats& o) const {
  CommStats d;
  for (int k = 0; k < (int)CommKind::count; ++k) d.bytes[k] = bytes[k] - o.bytes[k];
  d.exposed_ms = exposed_ms - o.exposed_ms;
  return d;
}

CommStats comm_stats() { return global_counters().snapshot(); }

size_t shard_count(size_t count, int parts, int index) {
  return count / parts + ((size_t)index < count % parts ? 1 : 0);
}
size_t shard_offset(size_t count, int parts, int index) {
  size_t rem = count % parts;
  return (size_t)index * (count / parts) + std::min((size_t)index, rem);
}
std::vector<size_t> shard_counts(size_t count, int parts) {
  std::vector<size_t> c(parts);
  for (int i = 0; i < parts; ++i) c[i] = shard_count(count, parts, i);
  return c;
}

// ---- Work
// -------------------------------------------------------------------------------------------
Work::Work(std::shared_ptr<WorkImpl> impl, std::shared_ptr<CommCounters> counters)
    : impl_(std::move(impl)), counters_(std::move(counters)) {}

Work::~Work() {
  if (!impl_ || std::uncaught_exceptions() == 0) return;
  bool done = true;
  try {
    done = impl_->test();
  } catch (...) {  // failed counts as done
  }
  if (!done) impl_->abandon();
}

double Work::wait() {
  if (!impl_) return 0;
  auto t0 = std::chrono::steady_clock::now();
  impl_->wait();
  int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  if (counters_) counters_->exposed_ns += ns;
  global_counters().exposed_ns += ns;
  return (double)ns / 1e6;
}

bool Work::test() { return !impl_ || impl_->test(); }

double wait_all(std::span<Work> works) {
  double ms = 0;
  for (Work& w : works) ms += w.wait();
  return ms;
}

// ---- Communicator
// -----------------------------------------------------------------------------------
Communicator::Communicator(int rank, int size, std::string name, const char* backend)
    : rank_(rank),
      size_(size),
      name_(std::move(name)),
      backend_(backend),
      counters_(std::make_shared<CommCounters>()) {}

CommStats Communicator::stats() const { return counters_->snapshot(); }

void Communicator::count_bytes(CommKind kind, int64_t bytes) {
  if (bytes <= 0) return;
  counters_->bytes[(int)kind] += bytes;
  global_counters().bytes[(int)kind] += bytes;
}

Work Communicator::reduce_scatter(const void* send, void* recv, size_t count, DType dt,
                                  ReduceOp op) {
  auto counts = shard_counts(count, size());
  return reduce_scatter(send, recv, counts, dt, op);
}

Work Communicator::all_gather(const void* send, void* recv, size_t count, DType dt) {
  auto counts = shard_counts(count, size());
  return all_gather(send, recv, counts, dt);
}

// ---- argument checks shared by the backends
// ---------------------------------------------------------
void check_reducible(const Communicator& c, const char* what, DType dt) {
  if (dt != DType::fp32 && dt != DType::bf16 && dt != DType::fp16)
    fail(what, " on communicator '", c.name(), "': cannot reduce ", dtype_name(dt),
         " (fp32, bf16 or fp16)");
}

void check_counts(const Communicator& c, const char* what, std::span<const size_t> counts) {
  if ((int)counts.size() != c.size())
    fail(what, " on communicator '", c.name(), "': ", counts.size(), " counts for ", c.size(),
         " ranks");
}

void check_peer(const Communicator& c, const char* what, int peer) {
  if (peer < 0 || peer >= c.size())
    fail(what, " on communicator '", c.name(), "': rank ", peer, " is not in 0..", c.size() - 1);
}

size_t sum_counts(std::span<const size_t> counts) {
  size_t s = 0;
  for (size_t c : counts) s += c;
  return s;
}

// ---- local backend: one rank, every operation is a copy (or nothing)
// -----------------------------------------
namespace {

struct DoneWork : WorkImpl {
  void wait() override {}
  bool test() override { return true; }
};

void copy_if_needed(void* dst, const void* src, size_t bytes) {
  if (bytes && dst != src) std::memmove(dst, src, bytes);
}

class LocalCommunicator : public Communicator {
 public:
  explicit LocalCommunicator(const std::string& name) : Communicator(0, 1, name, "local") {}

  Work all_reduce(const void* send, void* recv, size_t count, DType dt, ReduceOp) override {
    check_reducible(*this, "all_reduce", dt);
    copy_if_needed(recv, send, count * dtype_size(dt));
    return done();
  }
  Work reduce_scatter(const void* send, void* recv, std::span<const size_t> counts, DType dt,
                      ReduceOp) override {
    check_reducible(*this, "reduce_scatter", dt);
    check_counts(*this, "reduce_scatter", counts);
    copy_if_needed(recv, send, counts[0] * dtype_size(dt));
    return done();
  }
  Work all_gather(const void* send, void* recv, std::span<const size_t> counts, DType dt) override {
    check_counts(*this, "all_gather", counts);
    copy_if_needed(recv, send, counts[0] * dtype_size(dt));
    return done();
  }
  Work broadcast(void*, size_t, DType, int root) override {
    check_peer(*this, "broadcast", root);
    return done();
  }
  Work all_to_all(const void* send, std::span<const size_t> send_counts, void* recv,
                  std::span<const size_t> recv_counts, DType dt) override {
    check_counts(*this, "all_to_all", send_counts);
    check_counts(*this, "all_to_all", recv_counts);
    if (send_counts[0] != recv_counts[0])
      fail("all_to_all on communicator '", name(), "': sends ", send_counts[0],
           " elements to itself but expects ", recv_counts[0]);
    copy_if_needed(recv, send, send_counts[0] * dtype_size(dt));
    return done();
  }
  Work send(const void*, size_t, DType, int, int) override {
    fail("send on communicator '", name(), "': a one-rank communicator has no peer");
  }
  Work recv(void*, size_t, DType, int, int) override {
    fail("recv on communicator '", name(), "': a one-rank communicator has no peer");
  }
  Work barrier() override { return done(); }
  std::unique_ptr<Communicator> split(int, int, const std::string& name) override {
    return std::make_unique<LocalCommunicator>(name);
  }

 private:
  Work done() { return make_work(std::make_shared<DoneWork>()); }
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator(const std::string& name) {
  return std::make_unique<LocalCommunicator>(name);
}

std::unique_ptr<Communicator> make_world_communicator() {
  const ProcessContext* ctx = process_context();
  if (!ctx) fail("make_world_communicator: create a ProcessContext first");
  if (!ctx->mpi() || ctx->world() == 1) return make_local_communicator("world");
  return make_mpi_world_communicator();
}

#if !defined(ZT_CUDA)
std::unique_ptr<Communicator> make_nccl_communicator(Communicator&, Stream*) {
  fail("the NCCL backend needs a CUDA build (cmake -DZT_CUDA=ON)");
}
#endif

}  // namespace zt
