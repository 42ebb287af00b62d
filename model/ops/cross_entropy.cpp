// cross_entropy.cpp: softmax cross-entropy over logits [n, V] with int32 targets (fp32).
// losses[i] = logsumexp(z_i) - z_i[target_i], stable (the row max is subtracted before exp);
// backward adds scale * (softmax(z_i) - onehot(target_i)). Targets are validated before any work:
// one outside [0, V) throws zt::Error naming its value and position. Rows run in parallel.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "model/ops/ops.h"
#include "model/ops/vec_math.h"
#include "runtime/error.h"

namespace zt {

static constexpr int64_t parallel_min = 1 << 15;  // elements below which threads cost more

static void check_targets(const int32_t* targets, int n, int V) {
  for (int i = 0; i < n; ++i)
    if (targets[i] < 0 || targets[i] >= V)
      fail("cross_entropy: target ", targets[i], " at position ", i, " is outside [0, ", V, ")");
}

// row max and sum of exp(z - max); the max runs 16 maxima wide (a max reduction won't vectorise)
static void softmax_stats(const float* z, int V, float& mx, float& sum) {
  float ms[16];
  std::fill(ms, ms + 16, -INFINITY);
  int j0 = 0;
  for (; j0 + 16 <= V; j0 += 16)
    for (int u = 0; u < 16; ++u) ms[u] = std::max(ms[u], z[j0 + u]);
  for (; j0 < V; ++j0) ms[0] = std::max(ms[0], z[j0]);
  float m = *std::max_element(ms, ms + 16);
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < V; ++j) s += exp_fast(z[j] - m);
  mx = m;
  sum = s;
}

float cross_entropy_forward(float* losses, const float* logits, const int32_t* targets, int n,
                            int V) {
  check_targets(targets, n, V);
#pragma omp parallel for if ((int64_t)n * V > parallel_min)
  for (int i = 0; i < n; ++i) {
    const float* z = logits + (int64_t)i * V;
    float mx, sum;
    softmax_stats(z, V, mx, sum);
    losses[i] = mx + std::log(sum) - z[targets[i]];
  }
  double total = 0;
  for (int i = 0; i < n; ++i) total += losses[i];
  return n > 0 ? (float)(total / n) : 0.0f;
}

void cross_entropy_backward(float* dlogits, const float* logits, const int32_t* targets,
                            float scale, int n, int V) {
  check_targets(targets, n, V);
#pragma omp parallel for if ((int64_t)n * V > parallel_min)
  for (int i = 0; i < n; ++i) {
    const float* z = logits + (int64_t)i * V;
    float* dz = dlogits + (int64_t)i * V;
    float mx, sum;
    softmax_stats(z, V, mx, sum);
    float c = scale / sum;
    for (int j = 0; j < V; ++j) dz[j] += c * exp_fast(z[j] - mx);
    dz[targets[i]] -= scale;
  }
}

}  // namespace zt
