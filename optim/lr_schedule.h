/*
 * lr_schedule.h: the learning-rate schedule, linear warmup then cosine decay.
 *
 *   step < warmup:  lr = max_lr * (step + 1) / warmup        (max_lr / warmup .. max_lr)
 *   after:          cosine from max_lr at step = warmup down to min_lr at step = total - 1;
 *                   steps past total - 1 stay at min_lr.
 * With warmup >= total - 1 there is no room to decay: warmup only, then max_lr
 * (so warmup = 0, total = 1 trains its one step at max_lr).
 */
#pragma once
#include <cstdint>

namespace zt {

// step is 0-based
double lr_at(int64_t step, double max_lr, double min_lr, int64_t warmup, int64_t total);

}  // namespace zt
