/*
 * adamw_simd.h: the AdamW update of adamw.h as a vectorised CPU kernel.
 *
 * Paths: AVX-512 (avx512f), AVX2 (avx2 + fma + f16c), each compiled with a target attribute so
 * the build flags do not matter, chosen at run time from what the CPU supports; a portable scalar
 * loop otherwise. Threads (OpenMP, the pool OpenBLAS shares) each update one contiguous tile of
 * the slice. Optionally the same pass writes a 16-bit (bf16 or fp16, round-to-nearest-even) copy of
 * the updated fp32 master weights, and multiplies the gradient by a clipping factor on the fly.
 *
 * Results: every path computes the same per-element expressions as adamw_step_reference in the
 * same order, with the bias corrections from adamw_coeffs (double); the only possible difference
 * is where a multiply-add is fused, so m, v and p agree with the reference to within 4 ulps of the
 * magnitudes being added (tests/unit/test_adamw_simd.cpp); built with GCC 12 they are
 * bit-identical. The 16-bit copy is bit-exact fp32_to_bf16 / fp32_to_fp16 (runtime/dtype.h) of
 * the fp32 result, NaN payloads aside.
 */
#pragma once
#include <cstdint>

#include "optim/adamw.h"
#include "runtime/dtype.h"

namespace zt {

enum class AdamWImpl : uint8_t {
  best,       // the fastest available path: avx512, else avx2, else scalar
  avx512,     // 16 lanes, masked head and tail
  avx2,       // 8 lanes, masked head and tail (the same bits as avx512)
  scalar,     // portable C++ loop (the compiler may vectorise it for the build's target)
  reference,  // adamw_step_reference, then a separate cast loop when a 16-bit copy is asked for
};
const char* adamw_impl_name(AdamWImpl impl);  // "avx512", ...
bool adamw_impl_available(AdamWImpl impl);    // best, scalar and reference always are
AdamWImpl adamw_best_impl();                  // what `best` resolves to on this CPU

struct AdamWOptions {
  AdamWImpl impl = AdamWImpl::best;  // a path the CPU lacks is an error
  uint16_t* p16 = nullptr;           // [n]: when set, receives the updated p cast to p16_dtype
  DType p16_dtype = DType::bf16;     // bf16 | fp16
  float grad_scale = 1.0f;           // g is read as g * grad_scale (clipping); g is not written
};

// p, m, v, g [n]; updates p, m, v in place (and fills o.p16). Slices may start anywhere;
// threads split n >= 65536 into one tile each.
void adamw_step_simd(float* p, float* m, float* v, const float* g, int64_t n, int64_t step,
                     float lr, const AdamWConfig& c, bool decay, const AdamWOptions& o = {});

}  // namespace zt
