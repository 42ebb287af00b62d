// layers.h: the model's layers, each a forward and a backward over one microbatch's Acts.
//
//   embedding   resid[0] = E[inputs]
//   block l     h = x + Attn(RMSNorm_a(x)); resid[l+1] = h + FFN_l(RMSNorm_f(h)), x = resid[l]
//   head        logits = RMSNorm(resid[layers]) E^T (or H), cross-entropy against the targets
//
// A schedule calls them in any order that respects the data (a pipeline stage runs its own range
// of blocks); model/passes.h runs all of them in order. Parameters are read through the model's
// unit views, so whoever owns the parameters makes the units valid first (passes.h, UnitHooks).
//
// Backward, read these once:
//  - a.dres is the gradient of the residual stream: the head's backward sets it to the gradient
//    at resid[layers], each block's backward turns the gradient at its output into the gradient
//    at its input (a pipeline stage receives it from the next stage and sends it back).
//  - Parameter gradients accumulate (+=) into the model's unit_grads, across microbatches, until
//    the owner zeroes them.
//  - Backward is an input pass and a weight pass. The input pass computes every activation
//    gradient and the norm-gain gradients; the GEMM weight gradients (dW = x^T dout) run at once,
//    or, with defer_weights, are kept in the Acts (their transient operands copied) until
//    *_backward_weight runs them, which a zero-bubble schedule does in its bubbles. Both orders
//    give the same bits: each weight gradient is one product, added once. A deferred input pass
//    releases the activations only it needed (attention's q, k, v and probabilities, the FFNs'
//    pre-activations, the router's, the logits), so a microbatch waiting for its weight pass
//    holds its operands and little else; they regrow on the next forward.
#pragma once
#include <cstdint>
#include <vector>

#include "model/acts.h"
#include "model/model.h"

namespace zt {

struct LossParts {
  double ce = 0;        // mean next-token cross-entropy over the microbatch
  double aux = 0;       // sum over MoE blocks of the balance loss
  int64_t dropped = 0;  // expert assignments dropped by capacity, all MoE blocks
  // [layers x experts] (empty for a dense model): the assignments block l's router made to expert
  // e, at l * experts + e, over the blocks that ran, before capacity dropping
  std::vector<int64_t> load;
  double loss() const { return ce + aux; }
};
inline size_t load_size(const ModelConfig& c) { return (size_t)c.layers * c.experts; }

// tokens [B, T+1]: inputs are tokens[b, 0..T-1], targets tokens[b, 1..T]; sets a's shape. A token
// id outside [0, vocab) throws naming it. Every stage of a pipeline calls it (the last one needs
// the targets).
void load_tokens(const Model& m, Acts& a, const int32_t* tokens, int B, int T);
// The same check, into inputs and targets [B*T] (resized).
void split_tokens(const ModelConfig& c, const int32_t* tokens, int B, int T,
                  std::vector<int32_t>& inputs, std::vector<int32_t>& targets);

void embed_forward(Model& m, Acts& a);
void embed_backward(Model& m, Acts& a);  // dE += the gradient a.dres at resid[0] (weights only)

// Adds the block's aux loss and dropped assignments to `out`.
void block_forward(Model& m, int l, Acts& a, LossParts& out);
// Gradient of loss_scale * (ce + aux) through block l (loss_scale is the aux loss's weight).
void block_backward(Model& m, int l, Acts& a, GradScratch& s, float loss_scale,
                    bool defer_weights = false);
void block_backward_weight(Model& m, int l, Acts& a);

// Sets out.ce (mean over the microbatch's tokens).
void head_forward(Model& m, Acts& a, LossParts& out);
// Starts backward: a.dres = d(loss_scale * ce) / d resid[layers].
void head_backward(Model& m, Acts& a, GradScratch& s, float loss_scale, bool defer_weights = false);
void head_backward_weight(Model& m, Acts& a);

}  // namespace zt
