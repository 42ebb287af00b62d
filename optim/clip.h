/*
 * clip.h: global gradient-norm clipping, split so a distributed caller can all-reduce the square.
 *
 *   total_norm = sqrt(sum over ranks and slices of global_norm_sq(g_slice))
 *   scale      = clip_scale(total_norm, max_norm) = min(1, max_norm / (total_norm + 1e-6))
 *   g         *= scale                                       (as torch.nn.utils.clip_grad_norm_)
 */
#pragma once
#include <cstdint>

namespace zt {

// sum of g[i]^2 over g [n], accumulated in double
double global_norm_sq(const float* g, int64_t n);
// the factor to multiply gradients by; max_norm <= 0 means no clipping (1)
float clip_scale(double total_norm, double max_norm);

}  // namespace zt
