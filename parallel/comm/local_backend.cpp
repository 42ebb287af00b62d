// local_backend.cpp: the one-rank backend (every operation is a copy, or nothing) and the choice
// of the world communicator's backend.
#include <cstring>

#include "parallel/comm/backend.h"
#include "runtime/error.h"
#include "runtime/process.h"

namespace zt {
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
std::string nccl_version() { return ""; }
#endif

}  // namespace zt
