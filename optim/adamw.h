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

// p, m, v, g [n]; updates p, m, v in place.
void adamw_step(float* p, float* m, float* v, const float* g, int64_t n, int64_t step, float lr,
                const AdamWConfig& c, bool decay);

}  // namespace zt
