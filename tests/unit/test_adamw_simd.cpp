/*
 * test_adamw_simd.cpp: the vectorised AdamW kernel (optim/adamw_simd.h) against
 * adamw_step_reference, for every path this CPU has, sizes around the vector widths and one large
 * threaded size, each 16-bit output, with and without weight decay, over several steps.
 *
 * Tolerance: every path evaluates the reference's expressions in the reference's order, with
 * correctly rounded sqrt and division; they differ only in which multiply-adds are fused. So each
 * of m, v, p must agree with the reference to 4 ulps of the magnitudes its last operation adds:
 *   m: b1|m0| + a1|g|,  v: b2 v0 + a2 g^2,  p: shrink|p0| + |update|.
 * The 16-bit copy must equal fp32_to_bf16 / fp32_to_fp16 of the kernel's own fp32 result exactly.
 */
#include <gtest/gtest.h>
#include <omp.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "optim/adamw.h"
#include "optim/adamw_simd.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "tests/unit/grad_check.h"

namespace zt {
namespace {

constexpr double kUlps = 4;
const AdamWImpl kPaths[] = {AdamWImpl::avx512, AdamWImpl::avx2, AdamWImpl::scalar};
const DType kOuts[] = {DType::fp32, DType::bf16, DType::fp16};  // fp32: no 16-bit copy

struct State {
  std::vector<float> p, m, v;
};

uint16_t cast16(DType t, float x) { return t == DType::bf16 ? fp32_to_bf16(x) : fp32_to_fp16(x); }

// Runs one kernel step on a copy of `s` and checks it against the reference step `r` from the same
// state. Returns the number of elements that differ from the reference at all (for information).
int64_t check_step(AdamWImpl impl, DType out, const State& s, const State& r,
                   const std::vector<float>& g, int64_t t, float lr, const AdamWConfig& c,
                   bool decay) {
  const int64_t n = (int64_t)g.size();
  State k = s;
  std::vector<uint16_t> p16(out == DType::fp32 ? 0 : n, 0xdead);
  AdamWOptions o;
  o.impl = impl;
  if (out != DType::fp32) o.p16 = p16.data(), o.p16_dtype = out;
  adamw_step_simd(k.p.data(), k.m.data(), k.v.data(), g.data(), n, t, lr, c, decay, o);

  const AdamWCoeffs q = adamw_coeffs(t, lr, c, decay);
  int64_t differ = 0, bad = 0;
  for (int64_t i = 0; i < n && bad < 5; ++i) {
    double gi = g[i];
    double m_tol =
        kUlps * FLT_EPSILON * (q.b1 * std::fabs(s.m[i]) + q.a1 * std::fabs(gi)) + FLT_MIN;
    double v_tol = kUlps * FLT_EPSILON * (q.b2 * s.v[i] + q.a2 * gi * gi) + FLT_MIN;
    double denom = std::sqrt((double)r.v[i]) * q.inv_sqrt_bc2 + q.eps;
    double upd = q.step_size * std::fabs(r.m[i]) / denom;
    // The rounding of p's own terms, plus the m rounding allowed above carried into the update
    // (m can cancel to far below its terms; a compiler that fuses other products, clang's
    // -ffp-contract=on against GCC's fast, then differs from the reference by more than p's ulps).
    double p_tol = kUlps * FLT_EPSILON * (q.shrink * std::fabs(s.p[i]) + upd) +
                   q.step_size * m_tol / denom + FLT_MIN;
    bool ok = std::fabs(k.m[i] - r.m[i]) <= m_tol && std::fabs(k.v[i] - r.v[i]) <= v_tol &&
              std::fabs(k.p[i] - r.p[i]) <= p_tol;
    if (!ok) {
      ++bad;
      ADD_FAILURE() << adamw_impl_name(impl) << " n=" << n << " step " << t << " element " << i
                    << ": p " << k.p[i] << " vs " << r.p[i] << " (tol " << p_tol << "), m "
                    << k.m[i] << " vs " << r.m[i] << ", v " << k.v[i] << " vs " << r.v[i];
    }
    if (k.p[i] != r.p[i] || k.m[i] != r.m[i] || k.v[i] != r.v[i]) ++differ;
    if (out != DType::fp32 && p16[i] != cast16(out, k.p[i])) {
      ++bad;
      ADD_FAILURE() << adamw_impl_name(impl) << " " << dtype_name(out) << " n=" << n << " element "
                    << i << ": " << p16[i] << " vs " << cast16(out, k.p[i]) << " for " << k.p[i];
    }
  }
  return differ;
}

// Five steps of a decaying schedule along the reference's trajectory; at each step every path and
// output type starts from the reference's state.
void matches_reference(AdamWImpl impl, int64_t n, bool decay) {
  if (!adamw_impl_available(impl)) GTEST_SKIP() << adamw_impl_name(impl) << " not on this CPU";
  AdamWConfig c{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
  State s{test::to_float(test::random_vec(n, 1, 0.02)), std::vector<float>(n, 0.0f),
          std::vector<float>(n, 0.0f)};
  const float lrs[] = {1e-3f, 8e-4f, 5e-4f, 2e-4f, 1e-4f};
  for (int t = 1; t <= 5; ++t) {
    std::vector<float> g = test::to_float(test::random_vec(n, 100 + t, 0.1 * t));
    for (int64_t i = 0; i < n; i += 11) g[i] = 0.0f;   // zero gradients: decay only
    for (int64_t i = 5; i < n; i += 13) g[i] *= 1e4f;  // outliers
    State r = s;
    adamw_step_reference(r.p.data(), r.m.data(), r.v.data(), g.data(), n, t, lrs[t - 1], c, decay);
    for (DType out : kOuts) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " step " << t << " out " << dtype_name(out)
                                      << " decay " << decay);
      check_step(impl, out, s, r, g, t, lrs[t - 1], c, decay);
    }
    s = std::move(r);
  }
}

void matches_reference_all_sizes(AdamWImpl impl) {
  for (int64_t n : {1, 7, 15, 16, 17, 1000003})
    for (bool decay : {false, true}) matches_reference(impl, n, decay);
}

TEST(AdamWSimd, Avx512MatchesReference) { matches_reference_all_sizes(AdamWImpl::avx512); }
TEST(AdamWSimd, Avx2MatchesReference) { matches_reference_all_sizes(AdamWImpl::avx2); }
TEST(AdamWSimd, ScalarMatchesReference) { matches_reference_all_sizes(AdamWImpl::scalar); }

TEST(AdamWSimd, FreeRunningTrajectoryStaysOnReference) {
  // 20 steps where the kernel feeds on its own state: rounding differences must not grow
  const int64_t n = 4099;
  AdamWConfig c{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
  std::vector<float> p0 = test::to_float(test::random_vec(n, 3, 0.02));
  for (AdamWImpl impl : kPaths) {
    if (!adamw_impl_available(impl)) continue;
    State k{p0, std::vector<float>(n), std::vector<float>(n)}, r = k;
    for (int t = 1; t <= 20; ++t) {
      std::vector<float> g = test::to_float(test::random_vec(n, 200 + t, 0.1));
      adamw_step_reference(r.p.data(), r.m.data(), r.v.data(), g.data(), n, t, 1e-3f, c, true);
      AdamWOptions o;
      o.impl = impl;
      adamw_step_simd(k.p.data(), k.m.data(), k.v.data(), g.data(), n, t, 1e-3f, c, true, o);
    }
    // p moved by ~20 lr = 2e-2 from N(0, 0.02) values: 1e-6 relative is a few ulps of the updates
    EXPECT_LT(test::max_norm_err(k.p, r.p), 1e-6) << adamw_impl_name(impl);
    EXPECT_LT(test::max_norm_err(k.m, r.m), 1e-6) << adamw_impl_name(impl);
    EXPECT_LT(test::max_norm_err(k.v, r.v), 1e-6) << adamw_impl_name(impl);
  }
}

TEST(AdamWSimd, Avx2AndAvx512GiveTheSameBits) {
  // the two vector paths run the same instruction sequence per lane, heads and tails included
  if (!adamw_impl_available(AdamWImpl::avx512) || !adamw_impl_available(AdamWImpl::avx2))
    GTEST_SKIP() << "needs both avx512 and avx2";
  const int64_t n = 1000;
  AdamWConfig c;
  std::vector<float> g = test::to_float(test::random_vec(n, 12, 0.1));
  State s{test::to_float(test::random_vec(n, 13, 0.02)), std::vector<float>(n, 0.01f),
          std::vector<float>(n, 1e-3f)};
  for (int64_t off : {0, 1, 7, 13}) {
    State a = s, b = s;
    std::vector<uint16_t> ha(n), hb(n);
    AdamWOptions o{AdamWImpl::avx512, ha.data() + off, DType::fp16, 0.75f};
    const int64_t len = n - off;
    adamw_step_simd(a.p.data() + off, a.m.data() + off, a.v.data() + off, g.data() + off, len, 3,
                    1e-3f, c, true, o);
    o.impl = AdamWImpl::avx2, o.p16 = hb.data() + off;
    adamw_step_simd(b.p.data() + off, b.m.data() + off, b.v.data() + off, g.data() + off, len, 3,
                    1e-3f, c, true, o);
    EXPECT_EQ(a.p, b.p) << "offset " << off;
    EXPECT_EQ(a.m, b.m) << "offset " << off;
    EXPECT_EQ(a.v, b.v) << "offset " << off;
    EXPECT_EQ(ha, hb) << "offset " << off;
  }
}

TEST(AdamWSimd, CastMatchesScalarConversions) {
  // lr 0 and g 0 leave p exactly as it is, so the 16-bit copy is the cast of these values:
  // rounding ties (even and odd), bf16 and fp16 overflow, subnormals, signed zero, infinities.
  const uint32_t bits[] = {0x3f808000, 0x3f818000, 0x3f808001, 0x3f80ffff, 0x7f7fffff, 0xff7fffff,
                           0x00000001, 0x80400000, 0x387fc000, 0x33000000, 0x33000001, 0x38800000,
                           0x80000000, 0x00000000, 0x7f800000, 0xff800000, 0x477fe000, 0x477ff000,
                           0x477fefff, 0xc77ff000, 0x3c00f000, 0x3a801000};
  std::vector<float> vals;
  for (uint32_t b : bits) {
    float f;
    std::memcpy(&f, &b, 4);
    vals.push_back(f);
  }
  for (AdamWImpl impl : kPaths) {
    if (!adamw_impl_available(impl)) continue;
    for (int64_t offset : {0, 3, 9}) {  // the values land in the head, the body and the tail
      const int64_t n = offset + (int64_t)vals.size() + 21;
      std::vector<float> p(n, 1.5f), m(n), v(n), g(n);
      std::copy(vals.begin(), vals.end(), p.begin() + offset);
      for (DType out : {DType::bf16, DType::fp16}) {
        std::vector<float> q = p;
        std::vector<uint16_t> p16(n);
        AdamWOptions o{impl, p16.data(), out, 1.0f};
        adamw_step_simd(q.data(), m.data(), v.data(), g.data(), n, 3, 0.0f, {}, false, o);
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(std::memcmp(&q[i], &p[i], 4), 0) << adamw_impl_name(impl) << " element " << i;
          EXPECT_EQ(p16[i], cast16(out, p[i]))
              << adamw_impl_name(impl) << " " << dtype_name(out) << " value " << p[i];
        }
      }
    }
  }
}

TEST(AdamWSimd, SlicesAtEveryOffsetAndThreadCount) {
  // slices starting off the vector boundary, split over 1-3 threads: every element of the slice is
  // updated once, nothing outside it is touched
  const int64_t total = 70000 + 64, n = 70000;
  AdamWConfig c;
  std::vector<float> p0 = test::to_float(test::random_vec(total, 5, 0.02));
  std::vector<float> g = test::to_float(test::random_vec(total, 6, 0.1));
  const int saved = omp_get_max_threads();
  for (AdamWImpl impl : kPaths) {
    if (!adamw_impl_available(impl)) continue;
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      for (int64_t off : {0, 1, 5, 15, 17}) {
        State r{p0, std::vector<float>(total, 0.01f), std::vector<float>(total, 1e-4f)};
        State k = r;
        adamw_step_reference(r.p.data() + off, r.m.data() + off, r.v.data() + off, g.data() + off,
                             n, 4, 2e-4f, c, true);
        std::vector<uint16_t> p16(total, 0x7777);
        AdamWOptions o{impl, p16.data() + off, DType::bf16, 1.0f};
        adamw_step_simd(k.p.data() + off, k.m.data() + off, k.v.data() + off, g.data() + off, n, 4,
                        2e-4f, c, true, o);
        for (int64_t i = 0; i < total; ++i) {
          const bool inside = i >= off && i < off + n;
          const double tol = inside ? 1e-8 : 0.0;  // a few ulps of |p| <= 0.1; outside untouched
          ASSERT_NEAR(k.p[i], r.p[i], tol) << adamw_impl_name(impl) << " threads " << threads
                                           << " offset " << off << " element " << i;
          ASSERT_NEAR(k.m[i], r.m[i], tol) << adamw_impl_name(impl) << " element " << i;
          ASSERT_EQ(p16[i], inside ? fp32_to_bf16(k.p[i]) : 0x7777)
              << adamw_impl_name(impl) << " element " << i;
        }
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST(AdamWSimd, GradScaleEqualsPrescaledGradient) {
  const int64_t n = 1031;
  AdamWConfig c;
  std::vector<float> g = test::to_float(test::random_vec(n, 8, 3.0));
  std::vector<float> gs(n);
  const float scale = 0.3712f;
  for (int64_t i = 0; i < n; ++i) gs[i] = g[i] * scale;  // as the trainer clips: g *= scale
  for (AdamWImpl impl : kPaths) {
    if (!adamw_impl_available(impl)) continue;
    State a{test::to_float(test::random_vec(n, 9, 0.02)), std::vector<float>(n, 0.1f),
            std::vector<float>(n, 0.5f)};
    State b = a;
    AdamWOptions o;
    o.impl = impl;
    adamw_step_simd(a.p.data(), a.m.data(), a.v.data(), gs.data(), n, 7, 1e-3f, c, true, o);
    o.grad_scale = scale;
    adamw_step_simd(b.p.data(), b.m.data(), b.v.data(), g.data(), n, 7, 1e-3f, c, true, o);
    EXPECT_EQ(a.p, b.p) << adamw_impl_name(impl);
    EXPECT_EQ(a.m, b.m) << adamw_impl_name(impl);
    EXPECT_EQ(a.v, b.v) << adamw_impl_name(impl);
  }
}

TEST(AdamWSimd, DefaultStepIsTheBestPath) {
  const int64_t n = 333;
  AdamWConfig c;
  std::vector<float> g = test::to_float(test::random_vec(n, 10, 0.1));
  State a{test::to_float(test::random_vec(n, 11, 0.02)), std::vector<float>(n, 0.01f),
          std::vector<float>(n, 1e-3f)};
  State b = a;
  adamw_step(a.p.data(), a.m.data(), a.v.data(), g.data(), n, 2, 1e-3f, c, true);
  AdamWOptions o;
  o.impl = adamw_best_impl();
  adamw_step_simd(b.p.data(), b.m.data(), b.v.data(), g.data(), n, 2, 1e-3f, c, true, o);
  EXPECT_EQ(a.p, b.p);
  EXPECT_EQ(a.m, b.m);
  EXPECT_EQ(a.v, b.v);
  EXPECT_TRUE(adamw_impl_available(adamw_best_impl()));
  EXPECT_NE(adamw_best_impl(), AdamWImpl::best);
  EXPECT_NE(adamw_best_impl(), AdamWImpl::reference);
}

TEST(AdamWSimd, RejectsBadArguments) {
  float p = 1, m = 0, v = 0, g = 1;
  uint16_t h = 0;
  AdamWOptions o;
  o.p16 = &h;
  o.p16_dtype = DType::fp32;
  EXPECT_THROW(adamw_step_simd(&p, &m, &v, &g, 1, 1, 1e-3f, {}, true, o), Error);
  AdamWOptions r;
  r.impl = AdamWImpl::reference;
  r.grad_scale = 0.5f;
  EXPECT_THROW(adamw_step_simd(&p, &m, &v, &g, 1, 1, 1e-3f, {}, true, r), Error);
  EXPECT_THROW(adamw_step_simd(&p, &m, &v, &g, 1, 0, 1e-3f, {}, true), Error);  // step is 1-based
}

}  // namespace
}  // namespace zt
