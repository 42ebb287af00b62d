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

// The vocabulary split into slices (tensor parallelism): see ops.h.
void cross_entropy_slice_stats(float* stats, const float* logits, const int32_t* targets, int n,
                               int Vs, int v0) {
#pragma omp parallel for if ((int64_t)n * Vs > parallel_min)
  for (int i = 0; i < n; ++i) {
    const float* z = logits + (int64_t)i * Vs;
    float* st = stats + (int64_t)i * kCeStats;
    softmax_stats(z, Vs, st[0], st[1]);
    const int64_t t = (int64_t)targets[i] - v0;
    const bool mine = t >= 0 && t < Vs;
    st[2] = mine ? z[t] : 0.0f;
    st[3] = mine ? 1.0f : 0.0f;
  }
}

float cross_entropy_combine(float* losses, float* lse, const float* stats, int parts, int n,
                            const int32_t* targets) {
  double total = 0;
  for (int i = 0; i < n; ++i) {
    float m = -INFINITY, zt = 0, found = 0;
    for (int p = 0; p < parts; ++p) m = std::max(m, stats[((int64_t)p * n + i) * kCeStats]);
    float s = 0;
    for (int p = 0; p < parts; ++p) {
      const float* st = stats + ((int64_t)p * n + i) * kCeStats;
      s += st[1] * std::exp(st[0] - m);
      zt += st[2];
      found += st[3];
    }
    if (found != 1.0f)
      fail("cross_entropy: target ", targets[i], " at position ", i,
           " is in no slice of the vocabulary");
    lse[i] = m + std::log(s);
    losses[i] = lse[i] - zt;
    total += losses[i];
  }
  return n > 0 ? (float)(total / n) : 0.0f;
}

void cross_entropy_slice_backward(float* dlogits, const float* logits, const int32_t* targets,
                                  const float* lse, float scale, int n, int Vs, int v0) {
#pragma omp parallel for if ((int64_t)n * Vs > parallel_min)
  for (int i = 0; i < n; ++i) {
    const float* z = logits + (int64_t)i * Vs;
    float* dz = dlogits + (int64_t)i * Vs;
    for (int j = 0; j < Vs; ++j) dz[j] += scale * exp_fast(z[j] - lse[i]);
    const int64_t t = (int64_t)targets[i] - v0;
    if (t >= 0 && t < Vs) dz[t] -= scale;
  }
}

}  // namespace zt
