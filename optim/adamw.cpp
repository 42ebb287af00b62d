/*
 * adamw.cpp: the reference AdamW of adamw.h as one tight elementwise loop (OpenMP for large n),
 * and adamw_step, which hands the same update to the vectorised kernel of adamw_simd.h.
 * Bias corrections are computed once in double; the loop follows torch's arithmetic:
 * denom = sqrt(v) / sqrt(1 - b2^t) + eps, p -= (lr / (1 - b1^t)) * m / denom.
 */
#include "optim/adamw.h"

#include <omp.h>

#include <cmath>

#include "optim/adamw_simd.h"
#include "runtime/error.h"
#include "runtime/isa.h"
#include "runtime/split.h"

namespace zt {

static constexpr int64_t kParallelMin = 1 << 16;  // elements below which threads cost more

AdamWCoeffs adamw_coeffs(int64_t step, float lr, const AdamWConfig& c, bool decay) {
  ZT_CHECK(step >= 1, "AdamW step is 1-based, got ", step);
  const double bc1 = 1.0 - std::pow((double)c.beta1, (double)step);
  const double bc2 = 1.0 - std::pow((double)c.beta2, (double)step);
  AdamWCoeffs k;
  k.b1 = c.beta1, k.a1 = 1.0f - c.beta1;
  k.b2 = c.beta2, k.a2 = 1.0f - c.beta2;
  k.eps = c.eps;
  k.step_size = (float)((double)lr / bc1);
  k.inv_sqrt_bc2 = (float)(1.0 / std::sqrt(bc2));
  k.shrink = decay ? (float)(1.0 - (double)lr * c.weight_decay) : 1.0f;
  return k;
}

void adamw_step(float* p, float* m, float* v, const float* g, int64_t n, int64_t step, float lr,
                const AdamWConfig& c, bool decay) {
  adamw_step_simd(p, m, v, g, n, step, lr, c, decay);
}

// Elements [lo, hi) of the reference loop. Dispatched (runtime/isa.h) like the kernels it is the
// reference of: on a CPU with FMA it fuses the same multiply-adds a native build does.
ZT_DISPATCH static void adamw_reference_span(float* p, float* m, float* v, const float* g,
                                             int64_t lo, int64_t hi, const AdamWCoeffs& k) {
  const float b1 = k.b1, b2 = k.b2, a1 = k.a1, a2 = k.a2, eps = k.eps;
  const float step_size = k.step_size, inv_sqrt_bc2 = k.inv_sqrt_bc2, shrink = k.shrink;
#pragma omp simd
  for (int64_t i = lo; i < hi; ++i) {
    float gi = g[i];
    float mi = b1 * m[i] + a1 * gi;
    float vi = b2 * v[i] + a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float denom = std::sqrt(vi) * inv_sqrt_bc2 + eps;
    p[i] = p[i] * shrink - step_size * (mi / denom);
  }
}

void adamw_step_reference(float* p, float* m, float* v, const float* g, int64_t n, int64_t step,
                          float lr, const AdamWConfig& c, bool decay) {
  const AdamWCoeffs k = adamw_coeffs(step, lr, c, decay);
#pragma omp parallel if (n >= kParallelMin)
  {
    const EvenPiece mine = even_piece(n, omp_get_num_threads(), omp_get_thread_num());
    adamw_reference_span(p, m, v, g, mine.off, mine.off + mine.n, k);
  }
}

}  // namespace zt
