// swiglu.cpp: SwiGLU gate out = silu(a) * b, silu(z) = z * sigmoid(z) (fp32), elementwise.
// exp is a vectorisable polynomial (exp_fast below, relative error ~2e-7) since glibc's expf does
// not vectorise without -ffast-math and would cost several times the whole loop.
#include <algorithm>
#include <bit>
#include <cstdint>

#include "model/ops/ops.h"

namespace zt {

static constexpr int64_t parallel_min = 1 << 15;  // elements below which threads cost more

// exp(x) for x in [-87, 88] (clamped outside): x = k ln2 + r with |r| <= ln2/2, exp(r) by its
// degree-6 Taylor polynomial, 2^k built in the exponent bits. k is rounded by the 1.5*2^23 trick.
static inline float exp_fast(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  float t = x * 1.44269504f + 12582912.0f;
  float k = t - 12582912.0f;
  float r = x - k * 0.693145751953125f - k * 1.428606765330187e-06f;
  float p =
      1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 +
                                          r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  return p * std::bit_cast<float>((std::bit_cast<int32_t>(t) - 0x4B400000 + 127) << 23);
}

// a, b, out [n]
void swiglu_forward(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel for simd if (n > parallel_min)
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] / (1.0f + exp_fast(-a[i])) * b[i];
}

// da += dout b sig (1 + a (1 - sig)) ; db += dout a sig
void swiglu_backward(float* da, float* db, const float* dout, const float* a, const float* b,
                     int64_t n) {
#pragma omp parallel for simd if (n > parallel_min)
  for (int64_t i = 0; i < n; ++i) {
    float sig = 1.0f / (1.0f + exp_fast(-a[i]));
    if (da) da[i] += dout[i] * b[i] * sig * (1.0f + a[i] * (1.0f - sig));
    if (db) db[i] += dout[i] * a[i] * sig;
  }
}

}  // namespace zt
