// ring_plans.h: the message plan (message_plan.h) of every MPI-backend operation, as pure
// functions of this rank, the group size, the buffers, the block counts and the message sizes.
//
//   reduce-scatter  ring: at step s rank r sends block (r-s-1) mod n to r+1 and receives block
//                   (r-s-2) mod n from r-1 into a small slot, reduces it with its own block and
//                   forwards the partial at step s+1; after n-1 steps it holds block r reduced.
//                   Partials of steps before the last live in a scratch buffer (n > 2).
//   all-reduce      that ring with the partials in the output, then an all-gather ring of the
//                   reduced blocks (2(n-1)/n of the buffer sent).
//   all-gather      ring forwarding each block straight into the output, no copies.
//   broadcast       pipelined chain root -> root+1 -> ...
//   all-to-all      pairwise: step k sends to r+k and receives from r-k, all steps at once.
// Blocks are cut into messages of PlanChunks bytes, so the reduction of one message overlaps the
// transfer of the next and a block is forwarded before it has fully arrived.
#pragma once
#include <span>

#include "parallel/comm/message_plan.h"

namespace zt {

MessagePlan plan_all_reduce(int rank, int n, const void* send, void* recv, size_t count, DType dt,
                            ReduceOp op, const PlanChunks& chunks);
MessagePlan plan_reduce_scatter(int rank, int n, const void* send, void* recv,
                                std::span<const size_t> counts, DType dt, ReduceOp op,
                                const PlanChunks& chunks);
MessagePlan plan_all_gather(int rank, int n, const void* send, void* recv,
                            std::span<const size_t> counts, DType dt, const PlanChunks& chunks);
MessagePlan plan_broadcast(int rank, int n, void* buf, size_t count, DType dt, int root,
                           const PlanChunks& chunks);
MessagePlan plan_all_to_all(int rank, int n, const void* send, std::span<const size_t> send_counts,
                            void* recv, std::span<const size_t> recv_counts, DType dt,
                            const PlanChunks& chunks);
MessagePlan plan_send(int peer, const void* buf, size_t count, DType dt, const PlanChunks& chunks);
MessagePlan plan_recv(int peer, void* buf, size_t count, DType dt, const PlanChunks& chunks);

}  // namespace zt
