// weight_grads.h: the weight half of backward, run now or kept for later (layers.h, "Backward").
// Internal to the layers.
#pragma once
#include <cstring>
#include <vector>

#include "model/acts.h"

namespace zt {

// dw[in, out] += x^T dout, now, or (defer) kept in `jobs`. A kept job copies the operand that the
// rest of backward overwrites: dout, or x when transient_x (the tied head's dlogits).
inline void weight_grad(std::vector<WeightGradJob>& jobs, bool defer, float* dw, const float* x,
                        const float* dout, int n, int in, int out, bool transient_x = false) {
  if (!dw) return;
  if (!defer) {
    linear_backward_weight(dw, dout, x, n, in, out);
    return;
  }
  WeightGradJob& j = jobs.emplace_back(WeightGradJob{dw, x, dout, n, in, out, {}});
  const float* src = transient_x ? x : dout;
  const int64_t count = (int64_t)n * (transient_x ? in : out);
  j.kept.reset((size_t)count, MemCategory::activations);
  std::memcpy(j.kept.data(), src, sizeof(float) * (size_t)count);
  (transient_x ? j.x : j.dout) = j.kept.data();
}

inline void run_weight_grads(std::vector<WeightGradJob>& jobs) {
  for (WeightGradJob& j : jobs) linear_backward_weight(j.dw, j.dout, j.x, j.n, j.in, j.out);
  jobs.clear();
}

}  // namespace zt
