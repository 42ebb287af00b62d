// expert_parallel.h: the expert-parallel side of the MoE blocks (SPEC section 6). The model routes
// its own tokens and hands the routed rows to this hook (model/ep_hook.h), which moves them over
// the ep group of the grid (ep consecutive data-parallel ranks):
//   counts    one all-to-all of the per-expert row counts per MoE block and microbatch;
//   rows      all-to-all-v of exactly the rows each rank sends each other (no padding to the
//             largest count): forward the inputs to the experts and their outputs back, backward
//             the output gradients to the experts and the input gradients back.
// The experts' gradients then sum, in the model, over every row of the ep group, and the ZeRO
// engine reduces them over edp (the dp / ep ranks holding the same experts), which makes them
// the single process's gradients. Every operation goes through the Communicator (asynchronous,
// its bytes counted as comm.alltoall_bytes) and shows on the trace's communication track.
#pragma once
#include "model/ep_hook.h"
#include "parallel/comm/comm.h"

namespace zt {

class ExpertParallel : public ExpertParallelHook {
 public:
  explicit ExpertParallel(Communicator& ep) : ep_(ep) {}
  int ranks() const override { return ep_.size(); }
  void exchange_counts(const int32_t* send, int32_t* recv, int n) override;
  TpWait exchange_rows(EpPoint where, int layer, const float* send, const int32_t* send_rows,
                       float* recv, const int32_t* recv_rows, int width) override;

 private:
  Communicator& ep_;
};

}  // namespace zt
