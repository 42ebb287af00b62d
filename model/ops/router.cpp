/*
 * router.cpp: the MoE router, softmax over experts then top-k with optional renormalisation.
 *
 *   probs[i, :] = softmax(logits[i, :])                                     logits, probs [n, E]
 *   idx[i, k]   = the k-th most probable expert (ties: lower expert index)  idx [n, K]
 *   gates[i, k] = probs[i, idx[i, k]] / (renorm ? sum_k' probs[i, idx[i, k']] : 1)   gates [n, K]
 *
 * Backward, per token, with S the sum of the picked probabilities and dp the gradient reaching
 * probs: picked experts get dgates_k (no renorm) or (dgates_k - sum_k' dgates_k' gates_k') / S
 * (renorm), every expert gets dprobs; then the softmax: dlogits_e += p_e (dp_e - sum_j p_j dp_j).
 * Top-k selection is piecewise constant, so no gradient flows through the choice itself.
 * One token's work is router_row.h's, which the GPU kernel runs too.
 */
#include "model/ops/ops.h"
#include "model/ops/router_row.h"
#include "runtime/error.h"

namespace zt {

static constexpr int64_t kParallelMin = 1 << 14;  // elements below which threads cost more

void router_forward(float* probs, int32_t* idx, float* gates, const float* logits, int n, int E,
                    int K, bool renorm) {
  ZT_CHECK(K >= 1 && K <= E, "top_k ", K, " with ", E, " experts");
#pragma omp parallel for if ((int64_t)n * E >= kParallelMin)
  for (int i = 0; i < n; ++i)
    router_row_forward(probs + (int64_t)i * E, idx + (int64_t)i * K, gates + (int64_t)i * K,
                       logits + (int64_t)i * E, E, K, renorm);
}

void router_backward(float* dlogits, const float* dgates, const float* dprobs, const float* probs,
                     const int32_t* idx, int n, int E, int K, bool renorm) {
  if (!dlogits) return;
#pragma omp parallel for if ((int64_t)n * E >= kParallelMin)
  for (int i = 0; i < n; ++i)
    router_row_backward(dlogits + (int64_t)i * E, dgates ? dgates + (int64_t)i * K : nullptr,
                        dprobs ? dprobs + (int64_t)i * E : nullptr, probs + (int64_t)i * E,
                        idx + (int64_t)i * K, E, K, renorm);
}

}  // namespace zt
