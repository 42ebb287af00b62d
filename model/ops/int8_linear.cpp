// int8_linear.cpp: the integer linear of a quantized export (quant_ops.h): int8 activations (one
// scale per row) times int8 weights (one scale per group of input rows and output column), the
// products summed in int32 over each group and scaled once per group. Rows run on the OpenMP
// threads. Two kernels: AVX-512 VNNI on a packed weight (vpdpbusd, 64 products an instruction),
// where the CPU has it; otherwise a loop over output columns (int8 widened to int32) compiled for
// AVX-512, AVX2 and the baseline (runtime/isa.h) and vectorised by the compiler.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "model/ops/quant_ops.h"
#include "runtime/error.h"
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

#if defined(__x86_64__)
#define ZT_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))
ZT_VNNI void vnni_rows(float* y, const int8_t* xi, const float* sx, const Int8Packed& w,
                       const float* s, int64_t r0, int64_t r1, uint8_t* xu) {
  const int in = w.in, out = w.out, G = w.G, o16 = (out + 15) / 16;
  for (int64_t r = r0; r < r1; ++r) {
    for (int i = 0; i < in; ++i) xu[i] = (uint8_t)(xi[r * in + i] + 128);
    float* yr = y + r * out;
    const float rs = sx[r];
    for (int g0 = 0; g0 < in; g0 += G) {
      const int32_t* cs = w.colsum.data() + (int64_t)(g0 / G) * o16 * 16;
      const float* sg = s + (int64_t)(g0 / G) * out;
      for (int ob = 0; ob < o16; ++ob) {
        __m512i acc = _mm512_setzero_si512();
        for (int i = g0; i < g0 + G; i += 4) {
          int32_t four;
          std::memcpy(&four, xu + i, 4);
          const __m512i b = _mm512_loadu_si512(w.w.data() + ((int64_t)(i / 4) * o16 + ob) * 64);
          acc = _mm512_dpbusd_epi32(acc, _mm512_set1_epi32(four), b);
        }
        acc = _mm512_sub_epi32(acc, _mm512_loadu_si512(cs + ob * 16));  // the +128's share
        // y += (rs s) acc over the block's columns (the other kernel's order of operations)
        const int n = std::min(16, out - ob * 16);
        const __mmask16 m = (__mmask16)((1u << n) - 1u);
        const __m512 scale =
            _mm512_mul_ps(_mm512_set1_ps(rs), _mm512_maskz_loadu_ps(m, sg + ob * 16));
        const __m512 add = _mm512_mul_ps(scale, _mm512_maskz_cvtepi32_ps((__mmask16)0xFFFF, acc));
        _mm512_mask_storeu_ps(yr + ob * 16, m,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m, yr + ob * 16), add));
      }
    }
  }
}
#endif

}  // namespace

bool int8_vnni_available() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool yes = __builtin_cpu_supports("avx512vnni") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512f");
  return yes;
#else
  return false;
#endif
}

Int8Packed pack_int8_weight(const int8_t* wi, int in, int out, int G, bool vnni) {
  Int8Packed p;
  if (!vnni || !int8_vnni_available() || G % 4 != 0) return p;
  const int o16 = (out + 15) / 16;
  p.in = in, p.out = out, p.G = G;
  p.w.assign((size_t)in / 4 * o16 * 64, 0);
  p.colsum.assign((size_t)(in / G) * o16 * 16, 0);
  for (int i = 0; i < in; ++i)
    for (int o = 0; o < out; ++o) {
      const int8_t v = wi[(int64_t)i * out + o];
      p.w[(((size_t)(i / 4) * o16 + o / 16) * 16 + o % 16) * 4 + i % 4] = v;
      p.colsum[(size_t)(i / G) * o16 * 16 + o] += 128 * v;
    }
  return p;
}

void int8_linear_forward(float* y, const int8_t* xi, const float* sx, const Int8Packed& w,
                         const float* s, int n, bool accumulate) {
  ZT_CHECK(!w.empty(), "int8_linear_forward: an empty packed weight");
  if (n <= 0 || w.out <= 0) return;
  if (!accumulate) std::memset(y, 0, sizeof(float) * (size_t)n * w.out);
#if defined(__x86_64__)
#pragma omp parallel if ((int64_t)n * w.in * w.out > (1 << 20))
  {
    std::vector<uint8_t> xu((size_t)w.in);
    const EvenPiece p = even_piece(n, omp_get_num_threads(), omp_get_thread_num());
    vnni_rows(y, xi, sx, w, s, p.off, p.off + p.n, xu.data());
  }
#endif
}

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
