// moe_inputs.h (tests): router inputs whose top-k choice is decisive.
#pragma once
#include <cstdint>
#include <numeric>
#include <vector>

#include "model/ops/reference_moe.h"
#include "tests/unit/grad_check.h"

namespace zt::test {

// Logits whose per-token ranking is a rotation of the experts with gaps of 0.6 (noise 0.05):
// top-k never changes under a finite-difference step, and fp32 and double agree on it.
inline std::vector<double> separated_logits(int n, int E, uint64_t seed) {
  int a = 1;
  for (int c = 2; c < E; ++c)
    if (std::gcd(c, E) == 1) {
      a = c;
      break;
    }
  std::vector<double> noise = random_vec((size_t)n * E, seed, 0.05);
  std::vector<double> l((size_t)n * E);
  for (int i = 0; i < n; ++i)
    for (int e = 0; e < E; ++e) l[i * E + e] = 0.6 * ((e * a + i) % E) + noise[i * E + e];
  return l;
}

// The experts each token picks (top K, renormalised router) for the given logits.
inline std::vector<int32_t> route(const std::vector<double>& logits, int n, int E, int K) {
  std::vector<double> probs((size_t)n * E), gates((size_t)n * K);
  std::vector<int32_t> idx((size_t)n * K);
  ref::router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, true);
  return idx;
}

}  // namespace zt::test
