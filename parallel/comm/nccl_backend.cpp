// nccl_backend.cpp: the NCCL backend of Communicator (CUDA builds only, -DZT_CUDA=ON).
//
// Bootstrap: rank 0 of the bootstrap communicator (MPI) makes the NCCL unique id and broadcasts
// it; every rank then joins with ncclCommInitRank. Buffers are device memory.
// Ordering: each communicator has its own non-blocking side stream. A call records an event on the
// compute stream and makes the side stream wait for it (the inputs the compute stream produced are
// ready), launches the NCCL operation on the side stream and records a completion event.
// Work::wait() makes the compute stream wait for that event: later kernels see the result, and the
// host does not block (its exposed time is only the enqueue). Work::test() asks the event.
// Uneven blocks use grouped ncclReduce / ncclBroadcast; all_to_all and send/recv use grouped
// ncclSend / ncclRecv (NCCL matches point-to-point messages in issue order; tags are not used).
// Bytes are counted as the ring algorithms send them (comm.h), the way NCCL's rings do.
#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <numeric>

#include "parallel/comm/backend.h"
#include "parallel/comm/ring_bytes.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/split.h"

namespace zt {
namespace {

void nccl_check(ncclResult_t r, const char* call, const char* file, int line) {
  if (r == ncclSuccess) return;
  fail(file, ":", line, ": NCCL error ", ncclGetErrorString(r), " in ", call);
}
#define NCCL_CHECK(call) nccl_check((call), #call, __FILE__, __LINE__)

ncclDataType_t nccl_type(DType dt) {
  switch (dt) {
    case DType::fp32: return ncclFloat32;
    case DType::bf16: return ncclBfloat16;
    case DType::fp16: return ncclFloat16;
    case DType::int8: return ncclInt8;
  }
  return ncclInt8;
}

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::sum ? ncclSum : ncclMax; }

class NcclWork : public WorkImpl {
 public:
  NcclWork(cudaEvent_t done, cudaStream_t compute, ncclComm_t comm)
      : done_(done), compute_(compute), comm_(comm) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  void wait() override {
    check_async();
    CUDA_CHECK(cudaStreamWaitEvent(compute_, done_, 0));
  }
  bool test() override {
    check_async();
    cudaError_t e = cudaEventQuery(done_);
    if (e == cudaErrorNotReady) return false;
    CUDA_CHECK(e);
    return true;
  }

 private:
  void check_async() {
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
    NCCL_CHECK(async);
  }
  cudaEvent_t done_;
  cudaStream_t compute_;
  ncclComm_t comm_;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> owned, Communicator& boot, Stream* compute,
                   const std::string& name)
      : Communicator(boot.rank(), boot.size(), name, "nccl"),
        owned_boot_(std::move(owned)),
        boot_(boot),
        compute_stream_(compute),
        compute_(compute ? static_cast<cudaStream_t>(compute->handle) : nullptr) {
    ncclUniqueId id{};
    if (rank() == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    boot_.broadcast(&id, sizeof id, DType::int8, 0).wait();
    NCCL_CHECK(ncclCommInitRank(&comm_, size(), id, rank()));
    CUDA_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
  }
  ~NcclCommunicator() override {
    cudaStreamSynchronize(side_);
    ncclCommDestroy(comm_);
    cudaStreamDestroy(side_);
  }

  Work all_reduce(const void* send, void* recv, size_t count, DType dt, ReduceOp op) override {
    check_reducible(*this, "all_reduce", dt);
    count_bytes(CommKind::allreduce, all_reduce_bytes(count, size(), rank(), dtype_size(dt)));
    begin();
    NCCL_CHECK(ncclAllReduce(send, recv, count, nccl_type(dt), nccl_op(op), comm_, side_));
    return end();
  }

  Work reduce_scatter(const void* send, void* recv, std::span<const size_t> counts, DType dt,
                      ReduceOp op) override {
    check_reducible(*this, "reduce_scatter", dt);
    check_counts(*this, "reduce_scatter", counts);
    const size_t es = dtype_size(dt);
    count_bytes(CommKind::reduce_scatter, reduce_scatter_bytes(counts, rank(), es));
    begin();
    if (std::all_of(counts.begin(), counts.end(), [&](size_t c) { return c == counts[0]; })) {
      NCCL_CHECK(
          ncclReduceScatter(send, recv, counts[0], nccl_type(dt), nccl_op(op), comm_, side_));
    } else {
      NCCL_CHECK(ncclGroupStart());
      size_t off = 0;
      for (int b = 0; b < size(); ++b) {
        const char* src = static_cast<const char*>(send) + off * es;
        NCCL_CHECK(ncclReduce(src, b == rank() ? recv : nullptr, counts[b], nccl_type(dt),
                              nccl_op(op), b, comm_, side_));
        off += counts[b];
      }
      NCCL_CHECK(ncclGroupEnd());
    }
    return end();
  }

  Work all_gather(const void* send, void* recv, std::span<const size_t> counts, DType dt) override {
    check_counts(*this, "all_gather", counts);
    const size_t es = dtype_size(dt);
    count_bytes(CommKind::allgather, all_gather_bytes(counts, rank(), es));
    begin();
    if (std::all_of(counts.begin(), counts.end(), [&](size_t c) { return c == counts[0]; })) {
      NCCL_CHECK(ncclAllGather(send, recv, counts[0], nccl_type(dt), comm_, side_));
    } else {
      NCCL_CHECK(ncclGroupStart());
      size_t off = 0;
      for (int b = 0; b < size(); ++b) {
        char* dst = static_cast<char*>(recv) + off * es;
        NCCL_CHECK(ncclBroadcast(b == rank() ? send : dst, dst, counts[b], nccl_type(dt), b, comm_,
                                 side_));
        off += counts[b];
      }
      NCCL_CHECK(ncclGroupEnd());
    }
    return end();
  }

  Work broadcast(void* buf, size_t count, DType dt, int root) override {
    check_peer(*this, "broadcast", root);
    if (rank() != (root + size() - 1) % size())  // every rank but the chain's last forwards
      count_bytes(CommKind::broadcast, (int64_t)(count * dtype_size(dt)));
    begin();
    NCCL_CHECK(ncclBroadcast(buf, buf, count, nccl_type(dt), root, comm_, side_));
    return end();
  }

  Work all_to_all(const void* send, std::span<const size_t> send_counts, void* recv,
                  std::span<const size_t> recv_counts, DType dt) override {
    check_counts(*this, "all_to_all", send_counts);
    check_counts(*this, "all_to_all", recv_counts);
    const size_t es = dtype_size(dt);
    count_bytes(CommKind::alltoall, all_to_all_bytes(send_counts, rank(), es));
    begin();
    const char* in = static_cast<const char*>(send);
    char* out = static_cast<char*>(recv);
    size_t so = 0, ro = 0;
    NCCL_CHECK(ncclGroupStart());
    for (int p = 0; p < size(); ++p) {
      if (p == rank()) {
        CUDA_CHECK(cudaMemcpyAsync(out + ro * es, in + so * es, send_counts[p] * es,
                                   cudaMemcpyDeviceToDevice, side_));
      } else {
        if (send_counts[p])
          NCCL_CHECK(ncclSend(in + so * es, send_counts[p], nccl_type(dt), p, comm_, side_));
        if (recv_counts[p])
          NCCL_CHECK(ncclRecv(out + ro * es, recv_counts[p], nccl_type(dt), p, comm_, side_));
      }
      so += send_counts[p];
      ro += recv_counts[p];
    }
    NCCL_CHECK(ncclGroupEnd());
    return end();
  }

  Work send(const void* buf, size_t count, DType dt, int peer, int tag) override {
    check_peer(*this, "send", peer);
    if (tag < 0) fail("send on communicator '", name(), "': tag ", tag, " < 0");
    count_bytes(CommKind::p2p, (int64_t)(count * dtype_size(dt)));
    begin();
    NCCL_CHECK(ncclSend(buf, count, nccl_type(dt), peer, comm_, side_));
    return end();
  }

  Work recv(void* buf, size_t count, DType dt, int peer, int tag) override {
    check_peer(*this, "recv", peer);
    if (tag < 0) fail("recv on communicator '", name(), "': tag ", tag, " < 0");
    begin();
    NCCL_CHECK(ncclRecv(buf, count, nccl_type(dt), peer, comm_, side_));
    return end();
  }

  // The host-side barrier of the bootstrap communicator, after this communicator's queued work.
  Work barrier() override {
    CUDA_CHECK(cudaStreamSynchronize(side_));
    return boot_.barrier();
  }

  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    std::unique_ptr<Communicator> sub = boot_.split(color, key, name + ".bootstrap");
    Communicator& ref = *sub;
    return std::make_unique<NcclCommunicator>(std::move(sub), ref, compute_stream_, name);
  }

 private:
  // The side stream waits for everything queued on the compute stream so far.
  void begin() {
    cudaEvent_t ready;
    CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(ready, compute_));
    CUDA_CHECK(cudaStreamWaitEvent(side_, ready, 0));
    CUDA_CHECK(cudaEventDestroy(ready));  // released once the wait is done
  }
  Work end() {
    cudaEvent_t done;
    CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(done, side_));
    return make_work(std::make_shared<NcclWork>(done, compute_, comm_));
  }

  std::unique_ptr<Communicator> owned_boot_;
  Communicator& boot_;
  Stream* compute_stream_;
  cudaStream_t compute_;
  cudaStream_t side_ = nullptr;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::string nccl_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
         std::to_string(v % 100);
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, Stream* compute) {
  if (compute && compute->kind != DeviceKind::cuda)
    fail("make_nccl_communicator: the compute stream must be a CUDA stream");
  return std::make_unique<NcclCommunicator>(nullptr, bootstrap, compute, bootstrap.name());
}

}  // namespace zt
