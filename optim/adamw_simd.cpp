/*
 * adamw_simd.cpp: the AdamW kernel of adamw_simd.h. One range function per (path, 16-bit output)
 * updates elements [i0, i1); adamw_step_simd picks the function once per call and gives each
 * OpenMP thread one contiguous tile (a multiple of 16 elements, so tiles of a 64-byte aligned
 * slice start on cache lines). Each range function first steps to a 64-byte boundary of p (the
 * trainer's slices start at arbitrary offsets; m, v and g share p's offset), then streams full
 * vectors, then finishes the tail.
 *
 * The update per element, in adamw_step_reference's order (g' = g * grad_scale):
 *   m = b1 m + a1 g';  v = b2 v + (a2 g') g';  denom = sqrt(v) inv_sqrt_bc2 + eps;
 *   p = p shrink - step_size (m / denom)
 * sqrt and the division are the correctly rounded instructions, so the paths can differ from the
 * reference only where a multiply and an add are fused. The vector paths fuse exactly where GCC 12
 * fuses the reference loop at -O3 (b1 m + ., b2 v + ., sqrt(v) inv_sqrt_bc2 + eps,
 * p shrink - .), which makes them bit-identical to it there; other compilers may fuse otherwise.
 */
// GCC 12's AVX-512 intrinsics read a self-initialised "undefined" vector, which
// -Wmaybe-uninitialized reports once they are inlined into a target("avx512f") function (a false
// positive of GCC 12). The pragma must precede the first include of immintrin.h.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "optim/adamw_simd.h"

#if defined(__x86_64__) || defined(__i386__)
#define ZT_ADAMW_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "runtime/error.h"
#include "runtime/isa.h"

namespace zt {
namespace {

constexpr int64_t kParallelMin = 1 << 16;  // elements below which threads cost more

enum Out : int { kNone = 0, kBf16 = 1, kFp16 = 2 };

struct Arrays {
  float* p;
  float* m;
  float* v;
  const float* g;
  uint16_t* p16;  // null unless kOut != kNone
};

// Elements to step before p + i sits on a `bytes` boundary (floats are 4-byte aligned).
inline int64_t to_boundary(const float* p, int64_t bytes) {
  return (int64_t)((bytes - ((uintptr_t)p & (uintptr_t)(bytes - 1))) & (uintptr_t)(bytes - 1)) / 4;
}

// ---- scalar ------------------------------------------------------------------------------------

template <int kOut>
__attribute__((always_inline)) inline void update_one(const AdamWCoeffs& k, float gs,
                                                      const Arrays& a, int64_t i) {
  float gi = a.g[i] * gs;
  float mi = k.b1 * a.m[i] + k.a1 * gi;
  float vi = k.b2 * a.v[i] + k.a2 * gi * gi;
  a.m[i] = mi;
  a.v[i] = vi;
  float denom = std::sqrt(vi) * k.inv_sqrt_bc2 + k.eps;
  float pi = a.p[i] * k.shrink - k.step_size * (mi / denom);
  a.p[i] = pi;
  if constexpr (kOut == kBf16) a.p16[i] = fp32_to_bf16(pi);
  if constexpr (kOut == kFp16) a.p16[i] = fp32_to_fp16(pi);
}

// Dispatched (runtime/isa.h) like the reference loop, so that both fuse the same multiply-adds.
template <int kOut>
ZT_DISPATCH void range_scalar(const AdamWCoeffs& k, float gs, const Arrays& a, int64_t i0,
                              int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) update_one<kOut>(k, gs, a, i);
}

#if ZT_ADAMW_X86
// ---- AVX-512 ------------------------------------------------------------------------------------

#define ZT_AVX512 __attribute__((target("avx512f")))

struct Coeffs512 {
  __m512 b1, a1, b2, a2, eps, step_size, inv_sqrt_bc2, shrink, gs;
};

// bf16 bits (round-to-nearest-even, quiet NaN) of x in the low half of each 32-bit lane, as
// fp32_to_bf16 computes them.
ZT_AVX512 inline __m512i bf16_bits_512(__m512 x) {
  const __m512i u = _mm512_castps_si512(x), high = _mm512_srli_epi32(u, 16);
  const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  const __m512i quiet = _mm512_or_si512(high, _mm512_set1_epi32(0x40));
  return _mm512_mask_blend_epi32(nan, rounded, quiet);
}

// 16-bit copies of 16 lanes of x into dst, the lanes of `mask` only when kMask.
template <int kOut, bool kMask>
ZT_AVX512 inline void store16_512(uint16_t* dst, __m512 x, __mmask16 mask) {
  __m512i bits;
  if constexpr (kOut == kBf16) {
    bits = bf16_bits_512(x);
    if constexpr (!kMask) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm512_cvtepi32_epi16(bits));
      return;
    }
  } else {
    const __m256i h = _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if constexpr (!kMask) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), h);
      return;
    }
    bits = _mm512_cvtepu16_epi32(h);  // a masked 16-bit store needs 32-bit lanes in avx512f
  }
  _mm512_mask_cvtepi32_storeu_epi16(dst, mask, bits);
}

template <int kOut, bool kMask>
ZT_AVX512 inline void update_16(const Coeffs512& k, const Arrays& a, int64_t i, __mmask16 mask) {
  __m512 g, m, v, p;
  if constexpr (kMask) {  // masked-off lanes read 0: v = 0 gives denom = eps, no faults
    g = _mm512_maskz_loadu_ps(mask, a.g + i);
    m = _mm512_maskz_loadu_ps(mask, a.m + i);
    v = _mm512_maskz_loadu_ps(mask, a.v + i);
    p = _mm512_maskz_loadu_ps(mask, a.p + i);
  } else {
    g = _mm512_loadu_ps(a.g + i);
    m = _mm512_loadu_ps(a.m + i);
    v = _mm512_loadu_ps(a.v + i);
    p = _mm512_loadu_ps(a.p + i);
  }
  g = _mm512_mul_ps(g, k.gs);
  m = _mm512_fmadd_ps(k.b1, m, _mm512_mul_ps(k.a1, g));
  v = _mm512_fmadd_ps(k.b2, v, _mm512_mul_ps(_mm512_mul_ps(k.a2, g), g));
  const __m512 denom = _mm512_fmadd_ps(_mm512_sqrt_ps(v), k.inv_sqrt_bc2, k.eps);
  p = _mm512_fmsub_ps(p, k.shrink, _mm512_mul_ps(k.step_size, _mm512_div_ps(m, denom)));
  if constexpr (kMask) {
    _mm512_mask_storeu_ps(a.m + i, mask, m);
    _mm512_mask_storeu_ps(a.v + i, mask, v);
    _mm512_mask_storeu_ps(a.p + i, mask, p);
  } else {
    _mm512_storeu_ps(a.m + i, m);
    _mm512_storeu_ps(a.v + i, v);
    _mm512_storeu_ps(a.p + i, p);
  }
  if constexpr (kOut != kNone) store16_512<kOut, kMask>(a.p16 + i, p, mask);
}

template <int kOut>
ZT_AVX512 void range_avx512(const AdamWCoeffs& c, float gs, const Arrays& a, int64_t i0,
                            int64_t i1) {
  const Coeffs512 k = {
      _mm512_set1_ps(c.b1),           _mm512_set1_ps(c.a1),     _mm512_set1_ps(c.b2),
      _mm512_set1_ps(c.a2),           _mm512_set1_ps(c.eps),    _mm512_set1_ps(c.step_size),
      _mm512_set1_ps(c.inv_sqrt_bc2), _mm512_set1_ps(c.shrink), _mm512_set1_ps(gs)};
  int64_t i = i0;
  const int64_t head = std::min(to_boundary(a.p + i, 64), i1 - i);
  if (head > 0) {
    update_16<kOut, true>(k, a, i, (__mmask16)((1u << head) - 1));
    i += head;
  }
  for (; i + 16 <= i1; i += 16) update_16<kOut, false>(k, a, i, 0);
  if (i < i1) update_16<kOut, true>(k, a, i, (__mmask16)((1u << (i1 - i)) - 1));
}

// ---- AVX2 ---------------------------------------------------------------------------------------

#define ZT_AVX2 __attribute__((target("avx2,fma,f16c")))

struct Coeffs256 {
  __m256 b1, a1, b2, a2, eps, step_size, inv_sqrt_bc2, shrink, gs;
};

ZT_AVX2 inline __m128i bf16_bits_256(__m256 x) {
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i bits =
      _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  bits = _mm256_blendv_epi8(bits, quiet, nan);
  // every lane is < 2^16, so the unsigned saturating pack is a plain narrowing
  return _mm_packus_epi32(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
}

// The first `count` lanes of a mask for _mm256_maskload_ps / _mm256_maskstore_ps.
ZT_AVX2 inline __m256i first_lanes_256(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Elements [i, i + 8), or the first `count` of them when kMask; the same arithmetic as update_16,
// so the AVX2 and AVX-512 paths give identical bits.
template <int kOut, bool kMask>
ZT_AVX2 inline void update_8(const Coeffs256& k, const Arrays& a, int64_t i, int64_t count) {
  __m256 g, m, v, p;
  __m256i mask = _mm256_setzero_si256();
  if constexpr (kMask) {  // masked-off lanes read 0: v = 0 gives denom = eps, no faults
    mask = first_lanes_256(count);
    g = _mm256_maskload_ps(a.g + i, mask);
    m = _mm256_maskload_ps(a.m + i, mask);
    v = _mm256_maskload_ps(a.v + i, mask);
    p = _mm256_maskload_ps(a.p + i, mask);
  } else {
    g = _mm256_loadu_ps(a.g + i);
    m = _mm256_loadu_ps(a.m + i);
    v = _mm256_loadu_ps(a.v + i);
    p = _mm256_loadu_ps(a.p + i);
  }
  g = _mm256_mul_ps(g, k.gs);
  m = _mm256_fmadd_ps(k.b1, m, _mm256_mul_ps(k.a1, g));
  v = _mm256_fmadd_ps(k.b2, v, _mm256_mul_ps(_mm256_mul_ps(k.a2, g), g));
  const __m256 denom = _mm256_fmadd_ps(_mm256_sqrt_ps(v), k.inv_sqrt_bc2, k.eps);
  p = _mm256_fmsub_ps(p, k.shrink, _mm256_mul_ps(k.step_size, _mm256_div_ps(m, denom)));
  if constexpr (kMask) {
    _mm256_maskstore_ps(a.m + i, mask, m);
    _mm256_maskstore_ps(a.v + i, mask, v);
    _mm256_maskstore_ps(a.p + i, mask, p);
  } else {
    _mm256_storeu_ps(a.m + i, m);
    _mm256_storeu_ps(a.v + i, v);
    _mm256_storeu_ps(a.p + i, p);
  }
  if constexpr (kOut != kNone) {
    const __m128i h = kOut == kBf16
                          ? bf16_bits_256(p)
                          : _mm256_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if constexpr (kMask) {  // no 16-bit masked store in AVX2: go through memory
      alignas(16) uint16_t tmp[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(tmp), h);
      std::copy(tmp, tmp + count, a.p16 + i);
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(a.p16 + i), h);
    }
  }
}

template <int kOut>
ZT_AVX2 void range_avx2(const AdamWCoeffs& c, float gs, const Arrays& a, int64_t i0, int64_t i1) {
  const Coeffs256 k = {
      _mm256_set1_ps(c.b1),           _mm256_set1_ps(c.a1),     _mm256_set1_ps(c.b2),
      _mm256_set1_ps(c.a2),           _mm256_set1_ps(c.eps),    _mm256_set1_ps(c.step_size),
      _mm256_set1_ps(c.inv_sqrt_bc2), _mm256_set1_ps(c.shrink), _mm256_set1_ps(gs)};
  int64_t i = i0;
  const int64_t head = std::min(to_boundary(a.p + i, 32), i1 - i);
  if (head > 0) {
    update_8<kOut, true>(k, a, i, head);
    i += head;
  }
  for (; i + 8 <= i1; i += 8) update_8<kOut, false>(k, a, i, 8);
  if (i < i1) update_8<kOut, true>(k, a, i, i1 - i);
}

#endif  // ZT_ADAMW_X86

// ---- dispatch -----------------------------------------------------------------------------------

using RangeFn = void (*)(const AdamWCoeffs&, float, const Arrays&, int64_t, int64_t);

bool cpu_has(AdamWImpl impl) {
#if ZT_ADAMW_X86
  static const bool avx512 = [] {
    __builtin_cpu_init();
    return (bool)__builtin_cpu_supports("avx512f");
  }();
  static const bool avx2 = [] {
    __builtin_cpu_init();
    unsigned a = 0, b = 0, c = 0, d = 0;  // F16C from CPUID (clang 14's builtin lacks it)
    const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  }();
#else
  const bool avx512 = false, avx2 = false;
#endif
  switch (impl) {
    case AdamWImpl::avx512: return avx512;
    case AdamWImpl::avx2: return avx2;
    default: return true;
  }
}

RangeFn range_fn(AdamWImpl impl, int out) {
  static const RangeFn scalar[3] = {range_scalar<kNone>, range_scalar<kBf16>, range_scalar<kFp16>};
#if ZT_ADAMW_X86
  static const RangeFn avx512[3] = {range_avx512<kNone>, range_avx512<kBf16>, range_avx512<kFp16>};
  static const RangeFn avx2[3] = {range_avx2<kNone>, range_avx2<kBf16>, range_avx2<kFp16>};
  if (impl == AdamWImpl::avx512) return avx512[out];
  if (impl == AdamWImpl::avx2) return avx2[out];
#endif
  return scalar[out];
}

// The reference update followed by the cast as its own pass.
void step_reference(float* p, float* m, float* v, const float* g, int64_t n, int64_t step, float lr,
                    const AdamWConfig& c, bool decay, const AdamWOptions& o, int out) {
  ZT_CHECK(o.grad_scale == 1.0f, "the reference AdamW reads g unscaled; grad_scale ", o.grad_scale);
  adamw_step_reference(p, m, v, g, n, step, lr, c, decay);
  if (out == kBf16) {
#pragma omp parallel for if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) o.p16[i] = fp32_to_bf16(p[i]);
  } else if (out == kFp16) {
#pragma omp parallel for if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) o.p16[i] = fp32_to_fp16(p[i]);
  }
}

}  // namespace

const char* adamw_impl_name(AdamWImpl impl) {
  switch (impl) {
    case AdamWImpl::best: return "best";
    case AdamWImpl::avx512: return "avx512";
    case AdamWImpl::avx2: return "avx2";
    case AdamWImpl::scalar: return "scalar";
    case AdamWImpl::reference: return "reference";
  }
  return "?";
}

bool adamw_impl_available(AdamWImpl impl) { return cpu_has(impl); }

AdamWImpl adamw_best_impl() {
  return cpu_has(AdamWImpl::avx512) ? AdamWImpl::avx512
         : cpu_has(AdamWImpl::avx2) ? AdamWImpl::avx2
                                    : AdamWImpl::scalar;
}

void adamw_step_simd(float* p, float* m, float* v, const float* g, int64_t n, int64_t step,
                     float lr, const AdamWConfig& c, bool decay, const AdamWOptions& o) {
  ZT_CHECK(n >= 0, "n ", n);
  int out = kNone;
  if (o.p16) {
    ZT_CHECK(o.p16_dtype == DType::bf16 || o.p16_dtype == DType::fp16,
             "AdamW 16-bit copy must be bf16 or fp16, got ", dtype_name(o.p16_dtype));
    out = o.p16_dtype == DType::bf16 ? kBf16 : kFp16;
  }
  AdamWImpl impl = o.impl == AdamWImpl::best ? adamw_best_impl() : o.impl;
  ZT_CHECK(cpu_has(impl), "AdamW path ", adamw_impl_name(impl), " is not supported by this CPU");
  if (impl == AdamWImpl::reference)
    return step_reference(p, m, v, g, n, step, lr, c, decay, o, out);

  const AdamWCoeffs k = adamw_coeffs(step, lr, c, decay);
  const float gs = o.grad_scale;
  const Arrays a = {p, m, v, g, o.p16};
  const RangeFn fn = range_fn(impl, out);
  if (n < kParallelMin) return fn(k, gs, a, 0, n);
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t tile = ((n + threads - 1) / threads + 15) / 16 * 16;
    const int64_t i0 = std::min(n, t * tile), i1 = std::min(n, i0 + tile);
    if (i0 < i1) fn(k, gs, a, i0, i1);
  }
}

}  // namespace zt
