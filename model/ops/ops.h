// ops.h: every op of the model, each a *_forward / *_backward pair on raw fp32 pointers.
//
// Conventions (read these once):
//  - Activations are row-major [n, d] with n = B*T tokens; attention heads are contiguous column
//    blocks of width dh inside d (head h owns columns h*dh .. h*dh+dh-1).
//  - Weight matrices are stored [in, out] row-major (SPEC section 1): y = x W.
//  - Backward functions ACCUMULATE (+=) into every gradient they produce, parameter and activation
//    alike; callers zero gradient buffers. A null gradient pointer means "not needed".
//  - Each op has a plain reference in model/ops/reference_dense.h or reference_moe.h (tests).
#pragma once
#include <cstdint>
#include <vector>

namespace zt {

// embedding: out[n,d] = table[tok[i] - v0, :]                                 table [rows, d]
// The table holds the vocabulary rows [v0, v0 + rows) (rows < 0: all of it); a token outside them
// gives a zero row and no gradient (vocabulary-parallel: the slices sum to the lookup).
void embedding_forward(float* out, const int32_t* tok, const float* table, int n, int d, int v0 = 0,
                       int rows = -1);
void embedding_backward(float* dtable, const float* dout, const int32_t* tok, int n, int d,
                        int v0 = 0, int rows = -1);

// rmsnorm: out = x / sqrt(mean(x^2) + eps) * g; saves rstd[n] for backward.   x, out [n, d]; g [d]
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* g, int n, int d,
                     float eps);
void rmsnorm_backward(float* dx, float* dg, const float* dout, const float* x, const float* g,
                      const float* rstd, int n, int d);

// matmul: the model's one GEMM (every matrix product outside attention's own kernel goes
// through it: the seam for the CUDA path and QAT). Row-major, op(x) = x^T when its flag is set:
//   c[m, n] (=, or += when accumulate) op(a) op(b),  a [m, k] ([k, m] transposed), b [k, n]
//   ([n, k] transposed); k == 0 is an empty sum.
void matmul(float* c, const float* a, const float* b, int m, int n, int k, bool trans_a,
            bool trans_b, bool accumulate = false);

// linear: y = x W with W stored [in, out] (SPEC section 1), and its backward as two halves that
// can run apart (a zero-bubble pipeline defers the weight half):
//   forward          out[n, o] (=, or += when accumulate) x[n, i] W[i, o]
//   backward_input   dx[n, i] += dout W^T (=, when not accumulating: no zeroed buffer needed)
//   backward_weight  dw[i, o] += x^T dout
//   backward         both (a null dx or dw skips that half)
void linear_forward(float* out, const float* x, const float* w, int n, int in, int out_dim,
                    bool accumulate = false);
void linear_backward_input(float* dx, const float* dout, const float* w, int n, int in, int out_dim,
                           bool accumulate = true);
void linear_backward_weight(float* dw, const float* dout, const float* x, int n, int in,
                            int out_dim);
void linear_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, int n,
                     int in, int out_dim);

// rope (rotate_half convention), forward in place allowed (out == x); backward accumulates (or,
// with accumulate false, overwrites), so dx must not alias dout. x [B*T, H*dh]; position of row
// (b, t) is pos0 + t. Angle for pair (i, i + dh/2) is pos * base^(-2i/dh).
void rope_forward(float* out, const float* x, int B, int T, int H, int dh, float base,
                  int pos0 = 0);
void rope_backward(float* dx, const float* dout, int B, int T, int H, int dh, float base,
                   int pos0 = 0, bool accumulate = true);

// causal attention: out = softmax(q k^T / sqrt(dh)) v per (batch, head).
// q, k, v, out [B*T, H*dh]; probs [B, H, T, T] saved for backward (upper triangle zero).
void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                       int B, int T, int H, int dh);
// backward accumulates into dq, dk, dv (a null one is skipped), or overwrites them.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs,
                        const float* q, const float* k, const float* v, int B, int T, int H, int dh,
                        bool accumulate = true);

// decoding: one query row (the newest position) attends to the `len` cached positions, which
// include its own. q, out [H*dh]; k_cache, v_cache [len, ld] (row t = position t, head h in
// columns h*dh ..); scores [len] scratch.
void attention_decode_forward(float* out, const float* q, const float* k_cache,
                              const float* v_cache, int len, int H, int dh, int ld, float* scores);

// swiglu: out[i] = silu(a[i]) * b[i], silu(z) = z * sigmoid(z)
void swiglu_forward(float* out, const float* a, const float* b, int64_t n);
void swiglu_backward(float* da, float* db, const float* dout, const float* a, const float* b,
                     int64_t n);

// cross-entropy: losses[i] = logsumexp(logits[i,:]) - logits[i, target[i]]. Returns the mean.
// logits [n, V]. A target outside [0, V) throws naming it.
float cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int n,
                            int V);
// dlogits[i,:] += scale * (softmax(logits[i,:]) - onehot(target[i]))  (scale = dloss / n for a
// mean)
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int n, int V);

// cross-entropy over a vocabulary split into slices (tensor parallelism), never forming all of a
// row's logits on one rank. Each slice holds the logits [n, Vs] of the vocabulary [v0, v0 + Vs):
//  1. cross_entropy_slice_stats: stats[i] = (row max, sum of exp(z - max), the target's logit if
//     the target is in the slice else 0, 1 if it is else 0)                    stats [n, kCeStats]
//  2. the slices' stats are gathered (one all-gather of [parts, n, kCeStats])
//  3. cross_entropy_combine: losses[i] = lse[i] - target logit, lse the log-sum-exp over every
//     slice (kept for backward); returns the mean. A target in no slice throws naming it.
//  4. cross_entropy_slice_backward: dlogits += scale * (exp(z - lse) - onehot in the slice)
constexpr int kCeStats = 4;
void cross_entropy_slice_stats(float* stats, const float* logits, const int32_t* targets, int n,
                               int Vs, int v0);
float cross_entropy_combine(float* losses, float* lse, const float* stats, int parts, int n,
                            const int32_t* targets);
void cross_entropy_slice_backward(float* dlogits, const float* logits, const int32_t* targets,
                                  const float* lse, float scale, int n, int Vs, int v0);

// router: probs = softmax(logits) over E experts (fp32); each token picks its top K experts
// (ties broken by lower expert index), idx[n,K] in descending probability; gates[n,K] are the
// picked probabilities, renormalised to sum 1 when renorm.                      logits, probs [n,
// E]
void router_forward(float* probs, int32_t* idx, float* gates, const float* logits, int n, int E,
                    int K, bool renorm);
// dlogits += d/dlogits of (gates through dgates[n,K]) + (probs through dprobs[n,E], may be null)
void router_backward(float* dlogits, const float* dgates, const float* dprobs, const float* probs,
                     const int32_t* idx, int n, int E, int K, bool renorm);

// Switch/GShard aux loss: alpha * E * sum_i f_i * P_i; f_i = share of the n*K assignments that
// picked expert i (before capacity dropping), P_i = mean over tokens of probs[:, i].
float moe_aux_loss_forward(const float* probs, const int32_t* idx, int n, int E, int K,
                           float alpha);
// dprobs[n,E] += dloss * alpha * E * f_i / n
void moe_aux_loss_backward(float* dprobs, const int32_t* idx, int n, int E, int K, float alpha,
                           float dloss);

// MoE routing plan: which (token, slot) assignments each expert takes, in token order.
// capacity <= 0 means dropless; otherwise each expert keeps its first `capacity` assignments
// (lowest token index first) and drops the rest (a dropped assignment contributes zero).
struct MoePlan {
  int n = 0, E = 0, K = 0;
  std::vector<int32_t> offset;  // [E+1]: expert e's rows are offset[e] .. offset[e+1]-1
  std::vector<int32_t> token;   // [rows]: source token of each dispatched row
  std::vector<int32_t> slot;    // [rows]: which of the token's K picks (index into idx/gates)
  int64_t dropped = 0;          // assignments dropped by capacity
  int rows() const { return offset.empty() ? 0 : offset.back(); }
};
int moe_capacity(double capacity_factor, int n, int K, int E);  // ceil(c*n*K/E), 0 if c == 0
void moe_plan(MoePlan& plan, const int32_t* idx, int n, int E, int K, int capacity);

// dispatch: xe[r, :] = x[plan.token[r], :]                                  x [n, d]; xe [rows, d]
void moe_dispatch_forward(float* xe, const float* x, const MoePlan& plan, int d);
void moe_dispatch_backward(float* dx, const float* dxe, const MoePlan& plan, int d);
// combine: out[token[r], :] += gates[token[r], slot[r]] * ye[r, :]         out [n, d]; ye [rows, d]
void moe_combine_forward(float* out, const float* ye, const float* gates, const MoePlan& plan,
                         int d);
// dye[r] += g * dout[token[r]] ; dgates[token[r], slot[r]] += dot(dout[token[r]], ye[r])
void moe_combine_backward(float* dye, float* dgates, const float* dout, const float* ye,
                          const float* gates, const MoePlan& plan, int d);

}  // namespace zt
