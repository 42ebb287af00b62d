/*
 * lr_schedule.cpp: linear warmup then cosine decay (see lr_schedule.h for the exact definition).
 */
#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace zt {

double lr_at(int64_t step, double max_lr, double min_lr, int64_t warmup, int64_t total) {
  step = std::max<int64_t>(step, 0);
  warmup = std::max<int64_t>(warmup, 0);
  if (step < warmup) return max_lr * (double)(step + 1) / (double)warmup;
  int64_t decay_steps = total - 1 - warmup;  // cosine covers steps warmup .. total-1
  if (decay_steps <= 0) return max_lr;
  if (step >= total - 1) return min_lr;
  double progress = (double)(step - warmup) / (double)decay_steps;  // 0 .. 1
  double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return min_lr + (max_lr - min_lr) * cosine;
}

}  // namespace zt
