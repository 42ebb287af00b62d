// rmsnorm.cpp: RMSNorm forward and backward (fp32), y = x * rstd * g, rstd = 1/sqrt(mean(x^2)+eps).
// Rows are independent, so forward and dx run in parallel over rows; dg sums over rows, so it runs
// in parallel over column blocks instead (no race, same summation order for any thread count).
#include <algorithm>
#include <cmath>

#include "model/ops/ops.h"

namespace zt {

static constexpr int64_t parallel_min = 1 << 15;  // elements below which threads cost more

// x, out [n, d]; g [d]; rstd [n]
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* g, int n, int d,
                     float eps) {
#pragma omp parallel for if ((int64_t)n * d > parallel_min)
  for (int i = 0; i < n; ++i) {
    const float* xi = x + (int64_t)i * d;
    float* oi = out + (int64_t)i * d;
    float ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int j = 0; j < d; ++j) ss += xi[j] * xi[j];
    float r = 1.0f / std::sqrt(ss / d + eps);
    rstd[i] = r;
    for (int j = 0; j < d; ++j) oi[j] = xi[j] * r * g[j];
  }
}

// dx_j += r g_j dout_j - x_j r^3/d * sum_k dout_k g_k x_k ;  dg_j += sum_rows dout_j x_j r
void rmsnorm_backward(float* dx, float* dg, const float* dout, const float* x, const float* g,
                      const float* rstd, int n, int d) {
  bool par = (int64_t)n * d > parallel_min;
  if (dx) {
#pragma omp parallel for if (par)
    for (int i = 0; i < n; ++i) {
      const float* xi = x + (int64_t)i * d;
      const float* di = dout + (int64_t)i * d;
      float* dxi = dx + (int64_t)i * d;
      float dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int j = 0; j < d; ++j) dot += di[j] * g[j] * xi[j];
      float r = rstd[i], c = r * r * r * dot / d;
      for (int j = 0; j < d; ++j) dxi[j] += r * g[j] * di[j] - xi[j] * c;
    }
  }
  if (dg) {
    constexpr int block = 64;  // columns per task
    int blocks = (d + block - 1) / block;
#pragma omp parallel for if (par && blocks > 1)
    for (int cb = 0; cb < blocks; ++cb) {
      int j0 = cb * block, j1 = std::min(d, j0 + block);
      for (int i = 0; i < n; ++i) {
        const float* xi = x + (int64_t)i * d;
        const float* di = dout + (int64_t)i * d;
        float r = rstd[i];
        for (int j = j0; j < j1; ++j) dg[j] += di[j] * xi[j] * r;
      }
    }
  }
}

}  // namespace zt
