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
 */
#include <cmath>

#include "model/ops/ops.h"
#include "runtime/error.h"

namespace zt {

static constexpr int64_t kParallelMin = 1 << 14;  // elements below which threads cost more

void router_forward(float* probs, int32_t* idx, float* gates, const float* logits, int n, int E,
                    int K, bool renorm) {
  ZT_CHECK(K >= 1 && K <= E, "top_k ", K, " with ", E, " experts");
#pragma omp parallel for if ((int64_t)n * E >= kParallelMin)
  for (int i = 0; i < n; ++i) {
    const float* l = logits + (int64_t)i * E;
    float* p = probs + (int64_t)i * E;
    float mx = l[0];
    for (int e = 1; e < E; ++e) mx = std::fmax(mx, l[e]);
    float sum = 0.0f;
    for (int e = 0; e < E; ++e) {
      p[e] = std::exp(l[e] - mx);
      sum += p[e];
    }
    float inv = 1.0f / sum;
    for (int e = 0; e < E; ++e) p[e] *= inv;
    // top-k in the order (probability descending, index ascending): the next pick is the best
    // expert that comes strictly after the previous pick in that order.
    int32_t* ix = idx + (int64_t)i * K;
    float* g = gates + (int64_t)i * K;
    float picked = 0.0f;
    for (int k = 0; k < K; ++k) {
      int best = -1;
      for (int e = 0; e < E; ++e) {
        if (k > 0) {
          float pp = p[ix[k - 1]];
          if (!(p[e] < pp || (p[e] == pp && e > ix[k - 1]))) continue;
        }
        if (best < 0 || p[e] > p[best]) best = e;
      }
      if (best < 0)  // only with NaN probabilities: take the lowest expert not yet picked
        for (int e = 0; e < E && best < 0; ++e) {
          best = e;
          for (int j = 0; j < k; ++j)
            if (ix[j] == e) best = -1;
        }
      ix[k] = best;
      g[k] = p[best];
      picked += p[best];
    }
    if (renorm) {
      float inv_s = 1.0f / picked;
      for (int k = 0; k < K; ++k) g[k] *= inv_s;
    }
  }
}

void router_backward(float* dlogits, const float* dgates, const float* dprobs, const float* probs,
                     const int32_t* idx, int n, int E, int K, bool renorm) {
  if (!dlogits) return;
#pragma omp parallel for if ((int64_t)n * E >= kParallelMin)
  for (int i = 0; i < n; ++i) {
    const float* p = probs + (int64_t)i * E;
    const int32_t* ix = idx + (int64_t)i * K;
    const float* dg = dgates ? dgates + (int64_t)i * K : nullptr;
    const float* dpr = dprobs ? dprobs + (int64_t)i * E : nullptr;
    float* dl = dlogits + (int64_t)i * E;
    // c_k: gradient reaching probs[idx[k]] through the gates
    float S = 0.0f, dot = 0.0f;
    for (int k = 0; k < K; ++k) S += p[ix[k]];
    if (dg && renorm)
      for (int k = 0; k < K; ++k) dot += dg[k] * (p[ix[k]] / S);
    float inv_s = renorm ? 1.0f / S : 1.0f;
    // s = sum_e p_e dp_e
    float s = 0.0f;
    if (dpr)
      for (int e = 0; e < E; ++e) s += p[e] * dpr[e];
    if (dg)
      for (int k = 0; k < K; ++k) s += p[ix[k]] * (dg[k] - dot) * inv_s;
    for (int e = 0; e < E; ++e) dl[e] += p[e] * ((dpr ? dpr[e] : 0.0f) - s);
    if (dg)
      for (int k = 0; k < K; ++k) dl[ix[k]] += p[ix[k]] * (dg[k] - dot) * inv_s;
  }
}

}  // namespace zt
