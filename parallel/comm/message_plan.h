// message_plan.h: a collective as a list of point-to-point messages, the form the MPI backend runs.
//
// A MessagePlan is pure data: the sends and receives one rank makes for one operation, each with
// the dependencies that order it. Sends are posted in order once the receive they depend on is
// complete; receives are posted in order once a prefix of the sends is complete. A reducing
// receive lands in a slot and is combined with a local block into its destination. Messages
// between two ranks match in the order they are posted (MPI's non-overtaking rule), which is what
// the plans rely on. ring_plans.h builds them; mpi_plan_op.h runs one over MPI; the unit tests
// run n ranks' plans against each other in one process.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "parallel/comm/comm.h"

namespace zt {

struct MessagePlan {
  struct Send {
    int peer;
    const char* ptr;
    int bytes;
    int after_recv = -1;  // index of the receive that must be complete first, -1 = none
  };
  struct Recv {
    int peer;
    char* dst;
    int bytes;
    const char* local = nullptr;  // reducing receive: dst = local op received
    size_t elems = 0;
    bool streaming = false;  // final result: non-temporal stores
    int after_sends = 0;     // post only once sends [0, after_sends) are complete
  };

  DType dt = DType::fp32;
  ReduceOp op = ReduceOp::sum;
  std::vector<Send> sends;
  std::vector<Recv> recvs;
  // This rank's own block, memmove(copy_dst, copy_src, copy_bytes), done locally once the first
  // messages are posted (no message reads copy_dst or writes copy_src).
  char* copy_dst = nullptr;
  const char* copy_src = nullptr;
  size_t copy_bytes = 0;
  // Partial sums that live in a scratch buffer of scratch_bytes (reduce-scatter, n > 2): the
  // messages listed here hold offsets into it until bind_scratch() turns them into pointers.
  size_t scratch_bytes = 0;
  std::vector<int> recv_in_scratch, send_in_scratch;

  int64_t bytes_sent() const;
  int reducing_recvs() const;
  void bind_scratch(char* base);
};

// Message sizes of the plans, in bytes (the MPI backend reads them from the environment).
struct PlanChunks {
  size_t reduce = 1 << 20;  // reducing messages
  size_t copy = 4 << 20;    // forward-only messages (gather, broadcast, all-to-all, send)
  bool streaming = true;    // non-temporal stores for final reduced results
};

}  // namespace zt
