/*
 * test_optim.cpp: AdamW, the learning-rate schedule and gradient clipping.
 * Expected values are computed here, independently: AdamW steps written out in double from the
 * textbook formulas, the schedule's endpoints and cosine midpoints by hand, norms of known vectors.
 */
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/lr_schedule.h"
#include "tests/unit/grad_check.h"

namespace zt {
namespace {

// One AdamW step in double, written out as in the torch.optim.AdamW documentation.
void adamw_double(std::vector<double>& p, std::vector<double>& m, std::vector<double>& v,
                  const std::vector<double>& g, int t, double lr, double b1, double b2, double eps,
                  double wd, bool decay) {
  for (size_t i = 0; i < p.size(); ++i) {
    if (decay) p[i] -= lr * wd * p[i];
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
    p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
  }
}

void adamw_matches_double(int64_t n, bool decay) {
  AdamWConfig c{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
  std::vector<double> p = test::random_vec(n, 1, 0.02), m(n, 0.0), v(n, 0.0);
  std::vector<float> pf = test::to_float(p), mf(n, 0.0f), vf(n, 0.0f);
  const double lrs[] = {1e-3, 8e-4, 5e-4, 2e-4, 1e-4};  // a decaying schedule
  for (int t = 1; t <= 5; ++t) {
    std::vector<double> g = test::random_vec(n, 100 + t, 0.1 * t);
    std::vector<float> gf = test::to_float(g);
    g = test::to_double(gf);
    adamw_double(p, m, v, g, t, (float)lrs[t - 1], c.beta1, c.beta2, c.eps, c.weight_decay, decay);
    adamw_step(pf.data(), mf.data(), vf.data(), gf.data(), n, t, (float)lrs[t - 1], c, decay);
    EXPECT_LT(test::max_norm_err(mf, m), 1e-6) << "step " << t;
    EXPECT_LT(test::max_norm_err(vf, v), 1e-6) << "step " << t;
    // parameters are N(0, 0.02) like the init, so float rounding of p (~1e-9) is far below the
    // ~1e-3 updates: an error of 1e-7 means the update itself agrees to ~1e-4 or better
    double err = 0;
    for (int64_t i = 0; i < n; ++i) err = std::max(err, std::fabs(pf[i] - p[i]));
    EXPECT_LT(err, 1e-7) << "step " << t;
  }
}

TEST(AdamW, MatchesDoubleStepsWithoutDecay) { adamw_matches_double(37, false); }
TEST(AdamW, MatchesDoubleStepsWithDecay) { adamw_matches_double(37, true); }
TEST(AdamW, MatchesDoubleStepsLargeThreaded) { adamw_matches_double(200003, true); }

TEST(AdamW, FirstStepIsSignedLr) {
  // t = 1: mhat = g, vhat = g^2, so the update is lr * g / (|g| + eps) ~ lr * sign(g)
  AdamWConfig c{1e-2f, 0.9f, 0.999f, 1e-8f, 0.5f};
  std::vector<float> p = {1.0f, -2.0f, 0.5f, 3.0f}, g = {0.3f, -0.02f, 5.0f, -1.0f};
  std::vector<float> m(4, 0.0f), v(4, 0.0f);
  std::vector<float> q = p, mq = m, vq = v;
  adamw_step(p.data(), m.data(), v.data(), g.data(), 4, 1, 1e-2f, c, false);
  adamw_step(q.data(), mq.data(), vq.data(), g.data(), 4, 1, 1e-2f, c, true);
  const float p0[] = {1.0f, -2.0f, 0.5f, 3.0f}, sign[] = {1, -1, 1, -1};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(p[i], p0[i] - 1e-2 * sign[i], 1e-6) << i;
    EXPECT_NEAR(q[i], p0[i] * (1 - 1e-2 * 0.5) - 1e-2 * sign[i], 1e-6) << i;
    // (1 - beta) from the float config value: 1 - 0.999f is 0.000999987
    double m1 = (1 - (double)c.beta1) * g[i], v1 = (1 - (double)c.beta2) * g[i] * g[i];
    EXPECT_NEAR(m[i], m1, 1e-6 * std::fabs(m1)) << i;
    EXPECT_NEAR(v[i], v1, 1e-6 * v1) << i;
  }
}

TEST(AdamW, ZeroGradientOnlyDecays) {
  AdamWConfig c{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f};
  std::vector<float> p = {2.0f, -4.0f}, m(2, 0.0f), v(2, 0.0f), g(2, 0.0f);
  adamw_step(p.data(), m.data(), v.data(), g.data(), 2, 1, 0.5f, c, true);
  EXPECT_FLOAT_EQ(p[0], 2.0f * 0.95f);
  EXPECT_FLOAT_EQ(p[1], -4.0f * 0.95f);
}

TEST(Schedule, WarmupThenCosine) {
  const double mx = 1e-3, mn = 1e-4;
  const int64_t warmup = 10, total = 111;  // cosine over steps 10 .. 110 (100 intervals)
  EXPECT_DOUBLE_EQ(lr_at(0, mx, mn, warmup, total), mx / 10);
  EXPECT_DOUBLE_EQ(lr_at(4, mx, mn, warmup, total), mx * 5 / 10);
  EXPECT_DOUBLE_EQ(lr_at(9, mx, mn, warmup, total), mx);
  EXPECT_DOUBLE_EQ(lr_at(10, mx, mn, warmup, total), mx);
  EXPECT_NEAR(lr_at(60, mx, mn, warmup, total), (mx + mn) / 2, 1e-15);
  double quarter = mn + (mx - mn) * 0.5 * (1 + std::cos(std::numbers::pi / 4));
  EXPECT_NEAR(lr_at(35, mx, mn, warmup, total), quarter, 1e-15);
  EXPECT_DOUBLE_EQ(lr_at(110, mx, mn, warmup, total), mn);
  EXPECT_DOUBLE_EQ(lr_at(500, mx, mn, warmup, total), mn);  // past the end stays at min
  for (int64_t s = 10; s < 110; ++s)
    EXPECT_GT(lr_at(s, mx, mn, warmup, total), lr_at(s + 1, mx, mn, warmup, total)) << s;
}

TEST(Schedule, EdgeCases) {
  const double mx = 1e-3, mn = 1e-5;
  // no warmup: cosine from step 0
  EXPECT_DOUBLE_EQ(lr_at(0, mx, mn, 0, 11), mx);
  EXPECT_NEAR(lr_at(5, mx, mn, 0, 11), (mx + mn) / 2, 1e-15);
  EXPECT_DOUBLE_EQ(lr_at(10, mx, mn, 0, 11), mn);
  // one step: no room to decay
  EXPECT_DOUBLE_EQ(lr_at(0, mx, mn, 0, 1), mx);
  // warmup >= total: warmup only
  EXPECT_DOUBLE_EQ(lr_at(0, mx, mn, 20, 10), mx / 20);
  EXPECT_DOUBLE_EQ(lr_at(9, mx, mn, 20, 10), mx * 10 / 20);
  EXPECT_DOUBLE_EQ(lr_at(4, mx, mn, 5, 5), mx);
  // warmup = 1: full lr at step 0
  EXPECT_DOUBLE_EQ(lr_at(0, mx, mn, 1, 11), mx);
}

TEST(Clip, NormAndScale) {
  std::vector<float> g = {3.0f, -4.0f};
  EXPECT_DOUBLE_EQ(global_norm_sq(g.data(), 2), 25.0);
  EXPECT_FLOAT_EQ(clip_scale(5.0, 1.0), (float)(1.0 / (5.0 + 1e-6)));
  EXPECT_FLOAT_EQ(clip_scale(5.0, 10.0), 1.0f);
  EXPECT_FLOAT_EQ(clip_scale(5.0, 0.0), 1.0f);   // disabled
  EXPECT_FLOAT_EQ(clip_scale(5.0, -1.0), 1.0f);  // disabled
  EXPECT_FLOAT_EQ(clip_scale(0.0, 1.0), 1.0f);   // zero gradient
}

TEST(Clip, NormSqSplitsAcrossSlicesAndThreads) {
  const int64_t n = (1 << 17) + 3;
  std::vector<float> g(n, 0.5f);
  EXPECT_DOUBLE_EQ(global_norm_sq(g.data(), n), 0.25 * n);
  std::vector<double> r = test::random_vec(n, 7);
  std::vector<float> gf = test::to_float(r);
  double expect = 0;
  for (float x : gf) expect += (double)x * x;
  int64_t half = n / 2;
  double split = global_norm_sq(gf.data(), half) + global_norm_sq(gf.data() + half, n - half);
  EXPECT_NEAR(global_norm_sq(gf.data(), n), expect, 1e-9 * expect);
  EXPECT_NEAR(split, expect, 1e-9 * expect);
}

}  // namespace
}  // namespace zt
