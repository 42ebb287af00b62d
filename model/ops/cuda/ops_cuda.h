// ops_cuda.h: the model's elementwise and row-wise ops on the GPU (CUDA builds only), the same
// contracts as their CPU versions in model/ops/ops.h (what accumulates, what is saved), on device
// pointers, queued on `stream` (nullptr: the default stream). fp32 in and out, fp32 arithmetic.
// Each is checked against the CPU op by tests/cuda/test_cuda_ops.cpp on a GPU machine
// (tests/gpu/run_gpu_checks.sh). The GEMMs are the device layer's (runtime/device.h: cuBLAS).
//
// Token ids and targets are checked on the host where they are read (TokenData checks every token
// against the vocabulary); a target outside [0, V) here gives a NaN loss (and no one-hot term in
// the backward), never a fault.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "model/ops/ops.h"

namespace zt::gpu {

// out = x / sqrt(mean(x^2) + eps) * g, rstd[n] saved; x, out [n, d]
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* g, int n, int d,
                     float eps, cudaStream_t stream = nullptr);
// dx += ..., dg += ... (either may be null)
void rmsnorm_backward(float* dx, float* dg, const float* dout, const float* x, const float* g,
                      const float* rstd, int n, int d, cudaStream_t stream = nullptr);

// y[i] += x[i] (the residual adds)
void add(float* y, const float* x, int64_t n, cudaStream_t stream = nullptr);

// out = silu(a) * b; backward da += ..., db += ... (either may be null)
void swiglu_forward(float* out, const float* a, const float* b, int64_t n,
                    cudaStream_t stream = nullptr);
void swiglu_backward(float* da, float* db, const float* dout, const float* a, const float* b,
                     int64_t n, cudaStream_t stream = nullptr);

// rotate_half RoPE over x [B*T, H*dh], position pos0 + t; forward in place allowed; backward
// accumulates into dx (or overwrites it), dx must not alias dout.
void rope_forward(float* out, const float* x, int B, int T, int H, int dh, float base, int pos0 = 0,
                  cudaStream_t stream = nullptr);
void rope_backward(float* dx, const float* dout, int B, int T, int H, int dh, float base,
                   int pos0 = 0, bool accumulate = true, cudaStream_t stream = nullptr);

// out[i, :] = table[tok[i] - v0, :] for the vocabulary rows [v0, v0 + rows) held (rows < 0: all),
// a zero row otherwise; backward dtable += dout at those rows (atomic adds: a token's repeats
// add in any order).
void embedding_forward(float* out, const int32_t* tok, const float* table, int n, int d, int v0 = 0,
                       int rows = -1, cudaStream_t stream = nullptr);
void embedding_backward(float* dtable, const float* dout, const int32_t* tok, int n, int d,
                        int v0 = 0, int rows = -1, cudaStream_t stream = nullptr);

// losses[i] = logsumexp(logits[i, :]) - logits[i, targets[i]]; logits [n, V]
void cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int n, int V,
                           cudaStream_t stream = nullptr);
// dlogits[i, :] += scale * (softmax(logits[i, :]) - onehot(targets[i]))
void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int n, int V, cudaStream_t stream = nullptr);

// causal attention, fused: out = softmax(q k^T / sqrt(dh)) v per (batch, head), q, k, v, out
// [B*T, H*dh] as attention_forward, but never forming the T x T scores in memory: forward keeps
// each query row's log-sum-exp lse [B*H*T] (online softmax), backward recomputes the scores
// from it. Backward adds to dq, dk, dv (or overwrites them; a null one is skipped) and uses
// scratch [B*H*T] for each row's dot(dout, out) (needed whichever gradients are asked for). dh at
// most 256. One warp per query row (forward, dq) or key row (dk, dv): no atomics, the same sums on
// every run.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       int B, int T, int H, int dh, cudaStream_t stream = nullptr);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* lse, const float* q, const float* k, const float* v, int B,
                        int T, int H, int dh, float* scratch, bool accumulate = true,
                        cudaStream_t stream = nullptr);

// QAT's fake quantization (model/ops/quant_ops.h's conventions: w [in, out], step sizes
// s [in / G, out], levels -qp..qp, round half to even): the same float operations as the CPU,
// so the forward values are bitwise the CPU's.
void fake_quant_weight(float* q, const float* w, const float* s, int in, int out, int G, int qp,
                       cudaStream_t stream = nullptr);
// dw, ds += the LSQ gradients given g = dL/dq(w); one thread per (group, column) sums its G rows
// in order. `shared` as in quant_ops.h (0: G).
void fake_quant_weight_backward(float* dw, float* ds, const float* g, const float* w,
                                const float* s, int in, int out, int G, int qp, int shared = 0,
                                cudaStream_t stream = nullptr);
// x [n, d] fake-quantized to int8 per row in place (amax [n] given, or each row's own), and
// each row's absmax.
void fake_quant_rows(float* x, int64_t n, int d, const float* amax = nullptr,
                     cudaStream_t stream = nullptr);
void row_absmax(float* amax, const float* x, int64_t n, int d, cudaStream_t stream = nullptr);

// router: softmax over E experts and the top K picks (ties to the lower expert), the gates
// renormalised when renorm, as router_forward; backward dlogits += ... (dprobs may be null).
// One thread per token (E is tens of experts).
void router_forward(float* probs, int32_t* idx, float* gates, const float* logits, int n, int E,
                    int K, bool renorm, cudaStream_t stream = nullptr);
void router_backward(float* dlogits, const float* dgates, const float* dprobs, const float* probs,
                     const int32_t* idx, int n, int E, int K, bool renorm,
                     cudaStream_t stream = nullptr);

// A MoePlan (made on the host by moe_plan) on the device: each dispatched row's token and slot,
// and the inverse, each (token, slot)'s row or -1 when capacity dropped it. The gathers into a
// token then run per token over its K slots: no atomics, the same order on every run.
struct DevicePlan {
  int n = 0, K = 0, rows = 0;
  const int32_t* token = nullptr;   // [rows]
  const int32_t* slot = nullptr;    // [rows]
  const int32_t* row_of = nullptr;  // [n * K]
};
// row_of of a plan, for upload with its token and slot.
std::vector<int32_t> plan_rows_of(const MoePlan& plan);

// xe[r] = x[token[r]]; backward dx[t] += sum over t's kept slots of dxe[row]
void moe_dispatch_forward(float* xe, const float* x, const DevicePlan& plan, int d,
                          cudaStream_t stream = nullptr);
void moe_dispatch_backward(float* dx, const float* dxe, const DevicePlan& plan, int d,
                           cudaStream_t stream = nullptr);
// out[t] += sum over t's kept slots k of gates[t, k] * ye[row]; backward dye[r] += g dout[t],
// dgates[t, slot] += dot(dout[t], ye[r]) (either may be null)
void moe_combine_forward(float* out, const float* ye, const float* gates, const DevicePlan& plan,
                         int d, cudaStream_t stream = nullptr);
void moe_combine_backward(float* dye, float* dgates, const float* dout, const float* ye,
                          const float* gates, const DevicePlan& plan, int d,
                          cudaStream_t stream = nullptr);

}  // namespace zt::gpu
