// vec_math.h: math the compiler can vectorise without -ffast-math, shared by the ops.
#pragma once
#include <algorithm>
#include <bit>
#include <cstdint>

namespace zt {

// exp(x) for x in [-87, 88] (clamped outside), relative error ~2e-7: x = k ln2 + r with
// |r| <= ln2/2, exp(r) by its degree-6 Taylor polynomial, 2^k built in the exponent bits; k is
// rounded by the 1.5*2^23 trick. glibc's expf does not vectorise and would cost several times the
// loops that use this.
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

}  // namespace zt
