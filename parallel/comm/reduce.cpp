// reduce.cpp: elementwise sum / max of two buffers for the communication layer.
// Memory bound: one pass, 16 lanes per step with AVX-512. max(a, b) is `b > a ? b : a` (a NaN in
// a wins, as _mm512_max_ps(b, a) does).
#include "parallel/comm/reduce.h"

#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
// GCC 12 warns inside its own AVX-512 headers (_mm512_undefined_* self-initialisation, GCC bug
// 105593); the warning is about the header, not this file.
#pragma GCC diagnostic push
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include "runtime/error.h"

namespace zt {
namespace {

inline float combine(float a, float b, ReduceOp op) {
  return op == ReduceOp::sum ? a + b : (b > a ? b : a);
}

template <typename Load, typename Store>
void scalar_loop(size_t begin, size_t n, ReduceOp op, Load load, Store store) {
  for (size_t i = begin; i < n; ++i) store(i, combine(load(0, i), load(1, i), op));
}

#if defined(__AVX512F__)
inline __m512 combine16(__m512 a, __m512 b, ReduceOp op) {
  return op == ReduceOp::sum ? _mm512_add_ps(a, b) : _mm512_max_ps(b, a);
}

inline __m512 load_bf16x16(const uint16_t* p) {
  __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

// Round to nearest even, NaN kept quiet: the vector form of fp32_to_bf16.
inline __m256i to_bf16x16(__m512 f) {
  __m512i u = _mm512_castps_si512(f);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r =
      _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                          _mm512_set1_epi32(0x7f800000));
  r = _mm512_mask_mov_epi32(r, nan,
                            _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}

inline __m512 load_fp16x16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m256i to_fp16x16(__m512 f) {
  return _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

void reduce_fp32(float* dst, const float* a, const float* b, size_t n, ReduceOp op,
                 bool streaming) {
  size_t i = 0;
  if (streaming) {  // non-temporal stores need 64-byte aligned addresses
    for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 63); ++i)
      dst[i] = combine(a[i], b[i], op);
    for (; i + 16 <= n; i += 16)
      _mm512_stream_ps(dst + i, combine16(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), op));
    _mm_sfence();
  } else {
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(dst + i, combine16(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), op));
  }
  for (; i < n; ++i) dst[i] = combine(a[i], b[i], op);
}

template <bool kBf16>
void reduce_half(uint16_t* dst, const uint16_t* a, const uint16_t* b, size_t n, ReduceOp op,
                 bool streaming) {
  auto load = [](const uint16_t* p) { return kBf16 ? load_bf16x16(p) : load_fp16x16(p); };
  auto pack = [](__m512 f) { return kBf16 ? to_bf16x16(f) : to_fp16x16(f); };
  size_t i = 0;
  if (streaming) {
    for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 31); ++i)
      reduce_elements_reference(dst + i, a + i, b + i, 1, kBf16 ? DType::bf16 : DType::fp16, op);
    for (; i + 16 <= n; i += 16)
      _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i),
                          pack(combine16(load(a + i), load(b + i), op)));
    _mm_sfence();
  } else {
    for (; i + 16 <= n; i += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                          pack(combine16(load(a + i), load(b + i), op)));
  }
  if (i < n)
    reduce_elements_reference(dst + i, a + i, b + i, n - i, kBf16 ? DType::bf16 : DType::fp16, op);
}
#endif

}  // namespace

void reduce_elements_reference(void* dst, const void* a, const void* b, size_t n, DType dt,
                               ReduceOp op) {
  switch (dt) {
    case DType::fp32: {
      auto* d = static_cast<float*>(dst);
      const float* x[2] = {static_cast<const float*>(a), static_cast<const float*>(b)};
      scalar_loop(
          0, n, op, [&](int k, size_t i) { return x[k][i]; }, [&](size_t i, float v) { d[i] = v; });
      return;
    }
    case DType::bf16:
    case DType::fp16: {
      auto* d = static_cast<uint16_t*>(dst);
      const uint16_t* x[2] = {static_cast<const uint16_t*>(a), static_cast<const uint16_t*>(b)};
      bool bf = dt == DType::bf16;
      scalar_loop(
          0, n, op,
          [&](int k, size_t i) { return bf ? bf16_to_fp32(x[k][i]) : fp16_to_fp32(x[k][i]); },
          [&](size_t i, float v) { d[i] = bf ? fp32_to_bf16(v) : fp32_to_fp16(v); });
      return;
    }
    case DType::int8: break;
  }
  fail("cannot reduce ", dtype_name(dt), " buffers (fp32, bf16 or fp16 only)");
}

void reduce_elements(void* dst, const void* a, const void* b, size_t n, DType dt, ReduceOp op,
                     bool streaming) {
  if (n == 0) return;
#if defined(__AVX512F__)
  switch (dt) {
    case DType::fp32:
      return reduce_fp32(static_cast<float*>(dst), static_cast<const float*>(a),
                         static_cast<const float*>(b), n, op, streaming);
    case DType::bf16:
      return reduce_half<true>(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a),
                               static_cast<const uint16_t*>(b), n, op, streaming);
    case DType::fp16:
      return reduce_half<false>(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(a),
                                static_cast<const uint16_t*>(b), n, op, streaming);
    case DType::int8: break;
  }
#else
  (void)streaming;
  if (dt == DType::fp32) {  // a plain loop the compiler vectorises (AVX2 and below)
    auto* d = static_cast<float*>(dst);
    auto* x = static_cast<const float*>(a);
    auto* y = static_cast<const float*>(b);
    if (op == ReduceOp::sum)
      for (size_t i = 0; i < n; ++i) d[i] = x[i] + y[i];
    else
      for (size_t i = 0; i < n; ++i) d[i] = y[i] > x[i] ? y[i] : x[i];
    return;
  }
#endif
  reduce_elements_reference(dst, a, b, n, dt, op);
}

}  // namespace zt
