// comm.cpp: what every backend shares: the byte and wait counters, Work, the Communicator base.
#include "parallel/comm/comm.h"

#include <atomic>
#include <chrono>
#include <exception>

#include "runtime/error.h"
#include "runtime/split.h"

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
  static const char* names[] = {"allgather", "reduce_scatter", "allreduce", "p2p",
                                "alltoall",  "broadcast",      "control"};
  return names[(int)k];
}

CommStats CommStats::operator-(const CommStats& o) const {
  CommStats d;
  for (int k = 0; k < (int)CommKind::count; ++k) d.bytes[k] = bytes[k] - o.bytes[k];
  d.exposed_ms = exposed_ms - o.exposed_ms;
  return d;
}

CommStats comm_stats() { return global_counters().snapshot(); }

// Work

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

// Communicator

Communicator::Communicator(int rank, int size, std::string name, const char* backend)
    : rank_(rank),
      size_(size),
      name_(std::move(name)),
      backend_(backend),
      counters_(std::make_shared<CommCounters>()) {}

CommStats Communicator::stats() const { return counters_->snapshot(); }

namespace {
thread_local bool t_control = false;
}  // namespace

ControlTraffic::ControlTraffic() : outer_(t_control) { t_control = true; }
ControlTraffic::~ControlTraffic() { t_control = outer_; }

void Communicator::count_bytes(CommKind kind, int64_t bytes) {
  if (bytes <= 0) return;
  if (t_control) kind = CommKind::control;
  counters_->bytes[(int)kind] += bytes;
  global_counters().bytes[(int)kind] += bytes;
}

Work Communicator::reduce_scatter(const void* send, void* recv, size_t count, DType dt,
                                  ReduceOp op) {
  auto counts = even_split_counts(count, size());
  return reduce_scatter(send, recv, counts, dt, op);
}

Work Communicator::all_gather(const void* send, void* recv, size_t count, DType dt) {
  auto counts = even_split_counts(count, size());
  return all_gather(send, recv, counts, dt);
}

}  // namespace zt
