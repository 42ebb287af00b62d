// rope.cpp: rotary position embedding, rotate_half convention (fp32).
// In every head the pair (u_i, u_{i+dh/2}), i < dh/2, of the row at position p = pos0 + t is
// rotated by theta = p * base^(-2i/dh). The angles are computed in double (positions reach
// thousands, a float angle would be off by ~1e-4 rad) into a small per-call cos/sin table [T,
// dh/2]; nothing global, so calls from several threads are safe. Backward applies the transpose,
// the rotation by -theta, and accumulates into dx or overwrites it (dx must not alias dout).
#include <cmath>
#include <vector>

#include "model/ops/ops.h"
#include "runtime/error.h"

namespace zt {

static constexpr int64_t parallel_min = 1 << 15;  // elements below which threads cost more

// out (= or +=) R(sign * theta) x over x [B*T, H*dh]
static void rope_apply(float* out, const float* x, int B, int T, int H, int dh, float base,
                       int pos0, float sign, bool accumulate) {
  ZT_CHECK(dh % 2 == 0, "rope needs an even head dim, got ", dh);
  int half = dh / 2;
  std::vector<float> cs((size_t)T * half), sn((size_t)T * half);  // [T, half]
  for (int i = 0; i < half; ++i) {
    double inv_freq = std::pow((double)base, -2.0 * i / dh);
    for (int t = 0; t < T; ++t) {
      double theta = (double)(pos0 + t) * inv_freq;
      cs[(size_t)t * half + i] = (float)std::cos(theta);
      sn[(size_t)t * half + i] = sign * (float)std::sin(theta);
    }
  }
  int64_t rows = (int64_t)B * T, ld = (int64_t)H * dh;
#pragma omp parallel for if (rows * ld > parallel_min)
  for (int64_t r = 0; r < rows; ++r) {
    const float* c = cs.data() + (r % T) * half;
    const float* s = sn.data() + (r % T) * half;
    for (int h = 0; h < H; ++h) {
      const float* x1 = x + r * ld + (int64_t)h * dh;
      const float* x2 = x1 + half;
      float* o1 = out + r * ld + (int64_t)h * dh;
      float* o2 = o1 + half;
      if (accumulate) {
        for (int i = 0; i < half; ++i) {
          float u1 = x1[i], u2 = x2[i];
          o1[i] += u1 * c[i] - u2 * s[i];
          o2[i] += u2 * c[i] + u1 * s[i];
        }
      } else {
        for (int i = 0; i < half; ++i) {  // reads both halves first: in place is fine
          float u1 = x1[i], u2 = x2[i];
          o1[i] = u1 * c[i] - u2 * s[i];
          o2[i] = u2 * c[i] + u1 * s[i];
        }
      }
    }
  }
}

void rope_forward(float* out, const float* x, int B, int T, int H, int dh, float base, int pos0) {
  rope_apply(out, x, B, T, H, dh, base, pos0, 1.0f, false);
}

void rope_backward(float* dx, const float* dout, int B, int T, int H, int dh, float base, int pos0,
                   bool accumulate) {
  rope_apply(dx, dout, B, T, H, dh, base, pos0, -1.0f, accumulate);
}

}  // namespace zt
