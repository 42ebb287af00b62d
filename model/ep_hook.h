// ep_hook.h: how a model whose routed experts are spread over expert-parallel ranks moves rows.
//
// Under expert parallelism (SPEC section 6) rank j of an ep group holds experts
// [j * X / E, (j + 1) * X / E) of every MoE block (model/params.h, ExpertSlice). A block routes and
// plans its own tokens exactly as one process does (capacity included), then hands the rows to
// this hook: each rank's rows for rank j's experts go to rank j, which runs its experts on every
// row it received and sends the outputs back (forward), and the same with the gradients of the
// outputs and the inputs (backward). parallel/expert/ implements it over the ep communicator with
// all-to-all-v (no padding), so the model never includes comm.h. Every rank of the group calls
// every exchange of every MoE block, in the same order, whether or not it has rows to send.
#pragma once
#include <cstdint>

#include "model/tp_hook.h"  // TpWait: an exchange in flight

namespace zt {

enum class EpPoint : uint8_t {
  dispatch,  // forward: the routed rows to their experts
  combine,   // forward: the experts' outputs back to the rows' ranks
  grad_out,  // backward: dL/d(expert output) to the experts
  grad_in,   // backward: dL/d(expert input) back to the rows' ranks
  count
};
const char* ep_point_name(EpPoint p);

class ExpertParallelHook {
 public:
  virtual ~ExpertParallelHook() = default;
  virtual int ranks() const = 0;  // E, the ranks the experts are spread over
  // send[j * n, (j + 1) * n): n counts for rank j; recv[i * n, (i + 1) * n) gets rank i's n counts
  // for this rank. Blocking.
  virtual void exchange_counts(const int32_t* send, int32_t* recv, int n) = 0;
  // send holds send_rows[j] rows of `width` floats for each rank j, in rank order; recv gets
  // recv_rows[i] rows from each rank i, in rank order. The buffers and the counts stay untouched
  // until wait().
  virtual TpWait exchange_rows(EpPoint where, int layer, const float* send,
                               const int32_t* send_rows, float* recv, const int32_t* recv_rows,
                               int width) = 0;
};

}  // namespace zt
