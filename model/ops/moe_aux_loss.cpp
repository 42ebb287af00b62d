/*
 * moe_aux_loss.cpp: the Switch/GShard load-balancing loss of one microbatch.
 *
 *   loss = alpha * E * sum_i f_i * P_i
 *   f_i  = (number of the n*K assignments idx[:, :] == i) / (n*K), before capacity dropping
 *   P_i  = mean over the n tokens of probs[:, i]                         probs [n, E]; idx [n, K]
 *
 * f is piecewise constant in the logits, so only P carries gradient:
 *   dprobs[t, i] += dloss * alpha * E * f_i / n.
 */
#include <vector>

#include "model/ops/ops.h"
#include "runtime/error.h"

namespace zt {

// f[e] = share of the n*K assignments that picked expert e
static std::vector<double> assignment_share(const int32_t* idx, int n, int E, int K) {
  std::vector<double> f(E, 0.0);
  for (int64_t a = 0; a < (int64_t)n * K; ++a) {
    ZT_CHECK(idx[a] >= 0 && idx[a] < E, "expert index ", idx[a], " with ", E, " experts");
    f[idx[a]] += 1.0;
  }
  double inv = n > 0 ? 1.0 / ((double)n * K) : 0.0;
  for (auto& x : f) x *= inv;
  return f;
}

float moe_aux_loss_forward(const float* probs, const int32_t* idx, int n, int E, int K,
                           float alpha) {
  if (n <= 0) return 0.0f;
  std::vector<double> f = assignment_share(idx, n, E, K);
  std::vector<double> P(E, 0.0);  // column sums of probs
  for (int t = 0; t < n; ++t)
    for (int e = 0; e < E; ++e) P[e] += probs[(int64_t)t * E + e];
  double s = 0.0;
  for (int e = 0; e < E; ++e) s += f[e] * (P[e] / n);
  return (float)(alpha * (double)E * s);
}

void moe_aux_loss_backward(float* dprobs, const int32_t* idx, int n, int E, int K, float alpha,
                           float dloss) {
  if (!dprobs || n <= 0) return;
  std::vector<double> f = assignment_share(idx, n, E, K);
  std::vector<float> coef(E);  // d loss / d probs[t, e], the same for every token
  for (int e = 0; e < E; ++e) coef[e] = (float)((double)dloss * alpha * E * f[e] / n);
  for (int t = 0; t < n; ++t)
    for (int e = 0; e < E; ++e) dprobs[(int64_t)t * E + e] += coef[e];
}

}  // namespace zt
