// acts.h: the activations of one microbatch, owned by whoever runs the layers (model/layers.h).
//
// An Acts holds what backward needs of every layer that ran forward on it, and grows on first use:
// a pipeline stage that runs blocks 2..3 allocates only theirs. Buffers are kept for the next
// microbatch of the same shape (a schedule keeps one Acts per microbatch in flight). The
// backward temporaries shared by all blocks live in a GradScratch, one per backward at a time.
#pragma once
#include <cstdint>
#include <vector>

#include "model/ops/ops.h"
#include "runtime/alloc.h"

namespace zt {

// One weight-gradient product dw[in, out] += x^T dout, kept for a later weight pass (a zero-bubble
// schedule runs them in its bubbles). A transient operand is copied into `kept` when it is kept.
// With QAT (model/qat.h) the product goes through LSQ into dw and the step sizes' gradient ds.
class TensorParallelHook;
struct WeightQuant {
  const float* w = nullptr;  // the latent weight [in, out]; null: a plain product
  const float* s = nullptr;  // its step sizes
  float* ds = nullptr;
  int group = 0, qp = 0;
  int shared = 0;  // weights sharing a step size (0: group)
  // A row-parallel slice with per-channel step sizes: the step sizes' gradient is partial over
  // the tensor-parallel ranks, summed through this hook before it is added.
  TensorParallelHook* sum = nullptr;
  int layer = -1;
  Buffer<float>* scratch = nullptr;  // room for the product's dL/dq(w) (the model's, kept)
};
struct WeightGradJob {
  float* dw;
  const float* x;
  const float* dout;
  int n, in, out;
  Buffer<float> kept;
  WeightQuant quant = {};
};

// Expert parallelism: where one MoE block's routed rows went and came from (model/ep_hook.h), for
// R received rows and X experts on this rank.
struct ExpertRoute {
  std::vector<int32_t> send_rows;  // [ranks]: rows of this rank's plan for rank j's experts
  std::vector<int32_t> recv_rows;  // [ranks]: rows received from rank i
  std::vector<int32_t> counts;     // [ranks * X]: rows from rank i for local expert e
  std::vector<int32_t> offset;     // [X + 1]: local expert e's rows in the expert-major order
  int rows() const { return offset.empty() ? 0 : offset.back(); }
};

// What backward needs of one block (shapes for N = B*T tokens, d = model_dim).
struct BlockActs {
  Buffer<float> xa, q, k, v, att, h, xf;  // [N, d]; q, k after RoPE
  Buffer<float> rstd_a, rstd_f;           // [N]
  Buffer<float> probs;                    // [B, heads, T, T]
  Buffer<float> fa, fb, fs;               // dense FFN [N, ffn_dim]
  Buffer<float> rlogits, rprobs, gates;   // MoE: [N, E], [N, E], [N, K]
  std::vector<int32_t> idx;               // [N, K]
  MoePlan plan;
  Buffer<float> xe, ye;      // [N*K, d] dispatched rows, expert outputs
  Buffer<float> ea, eb, es;  // [rows, expert_ffn_dim] of the rows this rank's experts ran
  ExpertRoute route;         // expert parallel: the exchange of the rows
  Buffer<float> xl;          // expert parallel: the received rows, expert-major [R, d]
  Buffer<float> sa, sb, ss;  // shared expert [N, shared hidden]
  Buffer<float> xs;          // QAT: the shared expert's quantized input [N, d]
  double aux = 0;
  std::vector<WeightGradJob> wgrad;  // deferred weight-gradient products
};

// Keys and values of every position decoded so far (generation, batch 1): [capacity, d] per
// block, keys after RoPE.
struct KVCache {
  int capacity = 0, len = 0;
  std::vector<std::vector<float>> k, v;
};

struct Acts {
  int B = 0, T = 0, N = 0;
  // Sequence parallelism: the residual stream and the norms hold this rank's `rows` rows from
  // row0 (model/layer_util.h); without it rows = N and row0 = 0.
  bool sp = false;
  int rows = 0, row0 = 0;
  std::vector<int32_t> inputs, targets;    // [N]
  std::vector<Buffer<float>> resid;        // [layers + 1]: 0 the embedding output, l + 1 block l's
  std::vector<BlockActs> blocks;           // [layers]
  Buffer<float> xn, rstd, logits, losses;  // head: final norm [N, d], [N]; [N, V]; [N]
  Buffer<float> lse;                       // head under tp: each row's log-sum-exp [N]
  Buffer<float> dres;                      // gradient of the residual stream, flowing down
  std::vector<WeightGradJob> head_wgrad;   // the head's deferred weight-gradient product
  Buffer<float> full;                      // sequence parallel: a partial output [N, d]
  Buffer<float> ep_in, ep_out;             // expert parallel: rows in transit (sent, received)
  KVCache* kv = nullptr;                   // decoding: attention reads and extends this cache
  bool dropless = false;                   // decoding: experts take every assignment

  // Sets the microbatch shape; the buffers of another shape are dropped and regrow on use.
  void shape(int B, int T, int layers, int tp_ranks = 1, int tp_rank = 0, bool sp = false);
};

// Backward temporaries, reused by every block and the head.
struct GradScratch {
  Buffer<float> dxf, datt, dq, dk, dv, dqr, dkr, dxa;  // [N, d]
  Buffer<float> dha, dhb, dhs;                         // [rows * hidden] of one FFN
  Buffer<float> dye, dxe;                              // [N*K, d]
  Buffer<float> dgates, dprobs, drlogits;              // [N, K], [N, E], [N, E]
  Buffer<float> dlogits;                               // [N, V]
  Buffer<float> dy_full;  // sequence parallel: an output gradient gathered to all rows [N, d]
  Buffer<float> dx_rows;  // sequence parallel: the rank's rows of an input gradient [rows, d]
  Buffer<float> dgain;    // sequence parallel: a norm gain's gradient from the rank's rows [d]
  Buffer<float> ep_a, ep_b, ep_c;  // expert parallel: gradients of received rows [R, d]
};

// b holds at least n elements of activations afterwards (reallocated only when it is smaller).
inline float* room(Buffer<float>& b, int64_t n, MemCategory cat = MemCategory::activations) {
  if ((int64_t)b.size() < n) b.reset((size_t)n, cat);
  return b.data();
}

}  // namespace zt
