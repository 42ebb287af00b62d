// tp_hook.h: how a model split over tensor-parallel ranks completes its partial results.
//
// Under tensor parallelism (SPEC section 6, Megatron layout) a rank holds a slice of every split
// weight (model/params.h, Split) and computes with it: a row-parallel product (attention's wo,
// the FFNs' w2) gives this rank's partial sum of the output, a column-parallel layer's input
// gradient (wq/wk/wv, w1/w3) a partial sum of the gradient, the vocabulary-parallel embedding a
// partial lookup. The layers hand each such buffer to this hook at the point the layout sums it;
// parallel/tensor/ implements it over the tp communicator, so the model never includes comm.h.
// Model::tp is null on a single rank: the layers then skip the calls and accumulate in place.
// With sequence parallelism (Model::sequence_parallel) the norms and the residual stream hold
// each rank's share of the tokens: the column-parallel layers' inputs are gathered over the
// sequence first and the row-parallel outputs reduce-scattered back to it (and, backward, the
// reverse); the norm gains' gradients come out partial over the tokens and are summed.
#pragma once
#include <cstdint>
#include <functional>

namespace zt {

enum class TpPoint : uint8_t {
  embed_out,       // forward: the embedding lookup (each rank has its vocabulary rows)
  attn_out,        // forward: att Wo
  ffn_out,         // forward: the FFN's output (dense; experts + shared in MoE blocks)
  attn_dinput,     // backward: dL/d(attention norm output) from wq / wk / wv
  ffn_dinput,      // backward: dL/d(FFN norm output) from w1 / w3 (not the replicated router)
  moe_dgates,      // backward: dL/d(gates), from the partial expert outputs
  head_dinput,     // backward: dL/d(final norm output) from the head's vocabulary slice
  norm_grad,       // backward, sequence parallel: a norm gain's gradient from this rank's tokens
  qat_scale_grad,  // backward, QAT: per-channel step sizes' gradient from a row-parallel slice
  // sequence parallel, the gathers of the rank's tokens
  attn_in,     // forward: the attention norm's output, for wq / wk / wv
  ffn_in,      // forward: the FFN norm's output, for w1 / w3 and the router
  head_in,     // forward: the final norm's output, for the head
  ffn_dout,    // backward: dL/d(block output), for the FFN's row-parallel w2
  attn_dout,   // backward: dL/d(h), for wo
  embed_dout,  // backward: dL/d(embedding output), for the embedding's rows
  count
};
const char* tp_point_name(TpPoint p);

// A sum in flight; wait() completes it (the buffer must not be read before).
class TpWait {
 public:
  TpWait() = default;
  explicit TpWait(std::function<void()> done) : done_(std::move(done)) {}
  void wait() {
    if (!done_) return;
    auto d = std::move(done_);
    done_ = nullptr;
    d();
  }

 private:
  std::function<void()> done_;
};

class TensorParallelHook {
 public:
  virtual ~TensorParallelHook() = default;
  // x[n] is this rank's partial sum; after wait() it is the sum over the tensor-parallel ranks.
  virtual TpWait sum_partial(TpPoint where, int layer, float* x, int64_t n) = 0;
  // Every rank's mine[n], in rank order, into all[ranks * n] (the cross-entropy's row stats).
  virtual void gather(const float* mine, int64_t n, float* all) = 0;

  // Sequence parallelism: each rank holds n consecutive elements (its rows) of an activation.
  // gather_rows: every rank's rows, in rank order, into full[ranks * n]; `local` may already be
  // at its place in full. sum_rows: full[ranks * n] is a partial sum; this rank's n elements of
  // the sum over the ranks into local.
  virtual TpWait gather_rows(TpPoint where, int layer, const float* local, int64_t n,
                             float* full) = 0;
  virtual TpWait sum_rows(TpPoint where, int layer, const float* full, float* local, int64_t n) = 0;
};

}  // namespace zt
