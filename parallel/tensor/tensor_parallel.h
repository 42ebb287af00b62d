// tensor_parallel.h: the tensor-parallel side of the model's split layers (SPEC section 6,
// Megatron layout). The model computes with its slice of every split weight (model/params.h) and
// hands its partial results to this hook (model/tp_hook.h), which completes them over the tp group
// of the grid:
//   forward   the vocabulary-parallel embedding's lookup, attention's wo product and the FFN's
//             output: all-reduce (2 per block, 1 for the embedding);
//   backward  the column-parallel layers' input gradients (wq/wk/wv, w1/w3), the MoE gates'
//             gradient and the head's input gradient: all-reduce (2 per block, 3 in MoE blocks,
//             1 for the head), each in flight while the weight gradients that do not need it run;
//   the loss  the vocabulary-parallel cross-entropy's row stats: one all-gather of
//             (max, sum-exp, target logit, found) per token, never the full logits.
// With sequence parallelism each all-reduce of an activation becomes a reduce-scatter to the
// rank's tokens and the column-parallel layers' inputs an all-gather of them (forward; backward
// the reverse), plus an all-reduce of each norm gain's gradient.
// Every operation goes through the Communicator (asynchronous, its bytes counted) and shows on the
// trace's communication track.
#pragma once
#include "model/tp_hook.h"
#include "parallel/comm/comm.h"

namespace zt {

class TensorParallel : public TensorParallelHook {
 public:
  explicit TensorParallel(Communicator& tp) : tp_(tp) {}
  TpWait sum_partial(TpPoint where, int layer, float* x, int64_t n) override;
  void gather(const float* mine, int64_t n, float* all) override;
  TpWait gather_rows(TpPoint where, int layer, const float* local, int64_t n, float* full) override;
  TpWait sum_rows(TpPoint where, int layer, const float* full, float* local, int64_t n) override;

 private:
  Communicator& tp_;
};

}  // namespace zt
