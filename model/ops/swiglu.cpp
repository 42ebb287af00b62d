// swiglu.cpp: SwiGLU gate out = silu(a) * b, silu(z) = z * sigmoid(z) (fp32), elementwise.
// exp is the vectorisable polynomial exp_fast of vec_math.h (relative error ~2e-7): glibc expf does
// not vectorise without -ffast-math and would cost several times the whole loop.
#include <algorithm>
#include <bit>
#include <cstdint>

#include "model/ops/ops.h"
#include "model/ops/vec_math.h"

namespace zt {

static constexpr int64_t parallel_min = 1 << 15;  // elements below which threads cost more

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
