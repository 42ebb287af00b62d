// tp_hook.h: how a block split over tensor-parallel ranks completes its partial results.
//
// Under tensor parallelism (SPEC section 6, Megatron layout) a rank holds a slice of each block:
// a row-parallel product (attention's wo, the FFNs' w2) gives this rank's partial sum of the
// output, and a column-parallel layer's input gradient (wq/wk/wv, w1/w3) a partial sum of the
// gradient. The layers hand each such buffer to this hook at the point the Megatron layout sums it
// (two per block forward, two per block backward); parallel/tensor/ implements it over the tp
// communicator. The model never includes comm.h. Model::tp is null on a single rank: the layers
// then skip the calls and accumulate in place.
#pragma once
#include <cstdint>

namespace zt {

enum class TpPoint : uint8_t {
  attn_out,     // forward: att Wo
  ffn_out,      // forward: the FFN's output (dense; experts + shared in MoE blocks)
  attn_dinput,  // backward: dL/d(attention norm output) from wq / wk / wv
  ffn_dinput,   // backward: dL/d(FFN norm output) from w1 / w3 (not the replicated router)
};

class TensorParallelHook {
 public:
  virtual ~TensorParallelHook() = default;
  // x[n] is this rank's partial sum; on return it is the sum over the tensor-parallel ranks.
  virtual void sum_partial(TpPoint where, int layer, float* x, int64_t n) = 0;
};

}  // namespace zt
