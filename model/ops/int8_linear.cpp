// int8_linear.cpp: the integer linear of a quantized export (quant_ops.h): int8 activations (one
// scale per row) times int8 weights (one scale per group of input rows and output column), the
// products summed in int32 over each group and scaled once per group. Rows run on the OpenMP
// threads; the inner loop (over output columns, int8 widened to int32) is compiled for AVX-512,
// AVX2 and the baseline (runtime/isa.h) and vectorised by the compiler.
#include <omp.h>

#include <cstring>
#include <vector>

#include "model/ops/quant_ops.h"
#include "runtime/isa.h"
#include "runtime/split.h"

namespace zt {
namespace {

ZT_DISPATCH void int8_rows(float* y, const int8_t* xi, const float* sx, const int8_t* wi,
                           const float* s, int64_t r0, int64_t r1, int in, int out, int G,
                           int32_t* acc) {
  for (int64_t r = r0; r < r1; ++r) {
    const int8_t* xr = xi + r * in;
    float* yr = y + r * out;
    for (int g0 = 0; g0 < in; g0 += G) {
      std::memset(acc, 0, sizeof(int32_t) * (size_t)out);
      for (int i = g0; i < g0 + G; ++i) {
        const int32_t xv = xr[i];
        if (xv == 0) continue;
        const int8_t* wr = wi + (int64_t)i * out;
#pragma omp simd
        for (int o = 0; o < out; ++o) acc[o] += xv * (int32_t)wr[o];
      }
      const float* sg = s + (int64_t)(g0 / G) * out;
      const float rs = sx[r];
#pragma omp simd
      for (int o = 0; o < out; ++o) yr[o] += rs * sg[o] * (float)acc[o];
    }
  }
}

}  // namespace

void int8_linear_forward(float* y, const int8_t* xi, const float* sx, const int8_t* wi,
                         const float* s, int n, int in, int out, int G, bool accumulate) {
  if (n <= 0 || out <= 0) return;
  if (!accumulate) std::memset(y, 0, sizeof(float) * (size_t)n * out);
#pragma omp parallel if ((int64_t)n * in * out > (1 << 18))
  {
    std::vector<int32_t> acc((size_t)out);
    const EvenPiece p = even_piece(n, omp_get_num_threads(), omp_get_thread_num());
    int8_rows(y, xi, sx, wi, s, p.off, p.off + p.n, in, out, G, acc.data());
  }
}

}  // namespace zt
