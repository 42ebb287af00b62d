// swiglu.cpp: SwiGLU gate out = silu(a) * b, silu(z) = z * sigmoid(z) (fp32), elementwise.
// exp is the vectorisable polynomial exp_fast of vec_math.h (relative error ~2e-7): glibc expf does
// not vectorise without -ffast-math and would cost several times the whole loop.
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstdint>

#include "model/ops/ops.h"
#include "model/ops/vec_math.h"
#include "runtime/isa.h"
#include "runtime/split.h"

namespace zt {

static constexpr int64_t parallel_min = 1 << 15;  // elements below which threads cost more

ZT_DISPATCH static void swiglu_forward_span(float* out, const float* a, const float* b, int64_t lo,
                                            int64_t hi) {
#pragma omp simd
  for (int64_t i = lo; i < hi; ++i) out[i] = a[i] / (1.0f + exp_fast(-a[i])) * b[i];
}

ZT_DISPATCH static void swiglu_backward_span(float* da, float* db, const float* dout,
                                             const float* a, const float* b, int64_t lo,
                                             int64_t hi) {
#pragma omp simd
  for (int64_t i = lo; i < hi; ++i) {
    float sig = 1.0f / (1.0f + exp_fast(-a[i]));
    if (da) da[i] += dout[i] * b[i] * sig * (1.0f + a[i] * (1.0f - sig));
    if (db) db[i] += dout[i] * a[i] * sig;
  }
}

// a, b, out [n]
void swiglu_forward(float* out, const float* a, const float* b, int64_t n) {
#pragma omp parallel if (n > parallel_min)
  {
    const EvenPiece mine = even_piece(n, omp_get_num_threads(), omp_get_thread_num());
    swiglu_forward_span(out, a, b, mine.off, mine.off + mine.n);
  }
}

// da += dout b sig (1 + a (1 - sig)) ; db += dout a sig
void swiglu_backward(float* da, float* db, const float* dout, const float* a, const float* b,
                     int64_t n) {
#pragma omp parallel if (n > parallel_min)
  {
    const EvenPiece mine = even_piece(n, omp_get_num_threads(), omp_get_thread_num());
    swiglu_backward_span(da, db, dout, a, b, mine.off, mine.off + mine.n);
  }
}

}  // namespace zt
