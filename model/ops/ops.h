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

// embedding: out[n,d] = table[tok[i], :]                                      table [V, d]
void embedding_forward(float* out, const int32_t* tok, const float* table, int n, int d);
void embedding_backward(float* dtable, const float* dout, const int32_t* tok, int n, int d);

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
//   backward_input   dx[n, i] += dout W^T
//   backward_weight  dw[i, o] += x^T dout
//   backward         both (a null dx or dw skips that half)
void linear_forward(float* out, const float* x, const float* w, int n, int in, int out_dim,
                    bool accumulate = false);
void linear_backward_input(float* dx, const float* dout, const float* w, int n, int in,
                           int out_dim);
void linear_backward_weight(float* dw, const float* dout, const float* x, int n, int in,
                            int out_dim);
void linear_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, int n,
                     int in, int out_dim);

// rope (rotate_half convention), forward in place allowed (out == x); backward accumulates, so
// dx must not alias dout. x [B*T, H*dh]; position of row
// (b, t) is pos0 + t. Angle for pair (i, i + dh/2) is pos * base^(-2i/dh).
void rope_forward(float* out, const float* x, int B, int T, int H, int dh, float base,
                  int pos0 = 0);
void rope_backward(float* dx, const float* dout, int B, int T, int H, int dh, float base,
                   int pos0 = 0);

// causal attention: out = softmax(q k^T / sqrt(dh)) v per (batch, head).
// q, k, v, out [B*T, H*dh]; probs [B, H, T, T] saved for backward (upper triangle zero).
void attention_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                       int B, int T, int H, int dh);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* probs,
                        const float* q, const float* k, const float* v, int B, int T, int H,
                        int dh);

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
