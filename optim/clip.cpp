/*
 * clip.cpp: the squared gradient norm (double accumulation, OpenMP for large n) and the
 * clipping factor of clip.h.
 */
#include "optim/clip.h"

namespace zt {

static constexpr int64_t kParallelMin = 1 << 16;  // elements below which threads cost more

double global_norm_sq(const float* g, int64_t n) {
  double s = 0.0;
#pragma omp parallel for simd reduction(+ : s) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) s += (double)g[i] * (double)g[i];
  return s;
}

float clip_scale(double total_norm, double max_norm) {
  if (max_norm <= 0.0) return 1.0f;
  double s = max_norm / (total_norm + 1e-6);
  return s < 1.0 ? (float)s : 1.0f;
}

}  // namespace zt
