/*
 * adamw.h: AdamW exactly as torch.optim.AdamW, on one flat fp32 slice of parameters.
 *
 *   p -= lr * wd * p                       (decoupled decay, first, only when `decay`)
 *   m  = b1 * m + (1 - b1) * g
 *   v  = b2 * v + (1 - b2) * g^2
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)      t = step, 1-based
 *
 * The caller slices parameters (a ZeRO shard, one tensor, ...) and passes the scheduled lr;
 * config.lr is the peak lr the schedule starts from and is not read here.
 *
 * adamw_step runs the vectorised kernel of adamw_simd.h (the best path this CPU has);
 * adamw_step_reference is the plain loop the kernel is tested against.
 */
#pragma once
#include <cstdint>

namespace zt {

struct AdamWConfig {
  float lr = 3e-4f;  // peak learning rate (the schedule's max_lr)
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
};

// The per-call constants of the elementwise update, bias corrections computed once in double:
//   m = b1 m + a1 g;  v = b2 v + a2 g g;  denom = sqrt(v) inv_sqrt_bc2 + eps;
//   p = p shrink - step_size (m / denom)                                      (torch's order)
struct AdamWCoeffs {
  float b1, a1, b2, a2, eps;
  float step_size;     // lr / (1 - b1^t)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - b2^t)
  float shrink;        // 1 - lr wd with decay, else 1
};
AdamWCoeffs adamw_coeffs(int64_t step, float lr, const AdamWConfig& c, bool decay);

// p, m, v, g [n]; updates p, m, v in place.
void adamw_step(float* p, float* m, float* v, const float* g, int64_t n, int64_t step, float lr,
                const AdamWConfig& c, bool decay);

// The same update as one plain elementwise loop (OpenMP for large n): the reference.
void adamw_step_reference(float* p, float* m, float* v, const float* g, int64_t n, int64_t step,
                          float lr, const AdamWConfig& c, bool decay);

}  // namespace zt
