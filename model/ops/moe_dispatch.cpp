/*
 * moe_dispatch.cpp: the MoE routing plan and the data movement around the experts.
 *
 *   moe_capacity: ceil(c * n * K / E), evaluated in that order in double (as Python's
 *                 math.ceil(c * T * k / E) would), 0 for c <= 0 (dropless).
 *   moe_plan:     groups the n*K assignments idx[n, K] by expert; within an expert, rows follow
 *                 increasing token index. With capacity > 0 an expert keeps only its first
 *                 `capacity` assignments; the rest are dropped (no row) and counted.
 *   dispatch:     xe[r, :] = x[token[r], :]                              x [n, d]; xe [rows, d]
 *   combine:      out[token[r], :] += gates[token[r], slot[r]] * ye[r, :]   out [n, d]; ye [rows,
 * d]
 *
 * A token picks an expert at most once, so (token, slot) pairs are unique over rows: the
 * row-parallel loops below write disjoint outputs. Scatters into [n, d] run serially.
 */
#include <cmath>

#include "model/ops/ops.h"
#include "runtime/error.h"

namespace zt {

static constexpr int64_t kParallelMin = 1 << 15;  // elements below which threads cost more

int moe_capacity(double capacity_factor, int n, int K, int E) {
  if (capacity_factor <= 0.0) return 0;
  ZT_CHECK(E > 0, "experts ", E);
  return (int)std::ceil(capacity_factor * n * K / E);
}

void moe_plan(MoePlan& plan, const int32_t* idx, int n, int E, int K, int capacity) {
  plan.n = n;
  plan.E = E;
  plan.K = K;
  // count assignments per expert, then cap them
  std::vector<int32_t> count(E, 0);
  for (int64_t a = 0; a < (int64_t)n * K; ++a) {
    ZT_CHECK(idx[a] >= 0 && idx[a] < E, "expert index ", idx[a], " with ", E, " experts");
    count[idx[a]]++;
  }
  plan.offset.assign(E + 1, 0);
  plan.dropped = 0;
  for (int e = 0; e < E; ++e) {
    int32_t keep = capacity > 0 && count[e] > capacity ? capacity : count[e];
    plan.dropped += count[e] - keep;
    plan.offset[e + 1] = plan.offset[e] + keep;
  }
  // fill in token order; an expert's rows stop at its capacity
  int rows = plan.offset[E];
  plan.token.resize(rows);
  plan.slot.resize(rows);
  std::vector<int32_t> next(plan.offset.begin(), plan.offset.end() - 1);
  for (int t = 0; t < n; ++t)
    for (int k = 0; k < K; ++k) {
      int e = idx[(int64_t)t * K + k];
      if (next[e] == plan.offset[e + 1]) continue;  // full: dropped
      plan.token[next[e]] = t;
      plan.slot[next[e]] = k;
      next[e]++;
    }
}

void moe_dispatch_forward(float* xe, const float* x, const MoePlan& plan, int d) {
  int rows = plan.rows();
#pragma omp parallel for if ((int64_t)rows * d >= kParallelMin)
  for (int r = 0; r < rows; ++r) {
    const float* src = x + (int64_t)plan.token[r] * d;
    float* dst = xe + (int64_t)r * d;
    for (int j = 0; j < d; ++j) dst[j] = src[j];
  }
}

void moe_dispatch_backward(float* dx, const float* dxe, const MoePlan& plan, int d) {
  if (!dx) return;
  int rows = plan.rows();
  for (int r = 0; r < rows; ++r) {
    const float* src = dxe + (int64_t)r * d;
    float* dst = dx + (int64_t)plan.token[r] * d;
    for (int j = 0; j < d; ++j) dst[j] += src[j];
  }
}

void moe_combine_forward(float* out, const float* ye, const float* gates, const MoePlan& plan,
                         int d) {
  int rows = plan.rows();
  for (int r = 0; r < rows; ++r) {
    int t = plan.token[r];
    float g = gates[(int64_t)t * plan.K + plan.slot[r]];
    const float* y = ye + (int64_t)r * d;
    float* o = out + (int64_t)t * d;
    for (int j = 0; j < d; ++j) o[j] += g * y[j];
  }
}

void moe_combine_backward(float* dye, float* dgates, const float* dout, const float* ye,
                          const float* gates, const MoePlan& plan, int d) {
  int rows = plan.rows();
#pragma omp parallel for if ((int64_t)rows * d >= kParallelMin)
  for (int r = 0; r < rows; ++r) {
    int64_t gi = (int64_t)plan.token[r] * plan.K + plan.slot[r];
    const float* dO = dout + (int64_t)plan.token[r] * d;
    if (dye) {
      float g = gates[gi];
      float* dy = dye + (int64_t)r * d;
      for (int j = 0; j < d; ++j) dy[j] += g * dO[j];
    }
    if (dgates) {
      const float* y = ye + (int64_t)r * d;
      float s = 0.0f;
      for (int j = 0; j < d; ++j) s += dO[j] * y[j];
      dgates[gi] += s;
    }
  }
}

}  // namespace zt
