// The QAT ops (model/ops/quant_ops.h) against closed forms written out here element by element,
// finite differences where the function is differentiable (the step-size gradient of clipped
// weights), and the integer linear against an exact int64 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "model/ops/quant_ops.h"

namespace zt {
namespace {

std::vector<float> gaussian(size_t n, float std, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, std);
  std::vector<float> x(n);
  for (float& v : x) v = d(g);
  return x;
}

struct Case {
  int in, out, G, qp;
};
const Case kCases[] = {{32, 12, 32, 127}, {32, 12, 8, 7}, {48, 10, 16, 1}, {16, 5, 4, 7}};

double level(double v, int qp) { return std::fmin(std::fmax(std::nearbyint(v), -qp), qp); }

TEST(QuantOps, FakeQuantWeightIsTheClosedForm) {
  for (const Case& c : kCases) {
    const std::vector<float> w = gaussian((size_t)c.in * c.out, 0.02f, 1);
    std::vector<float> s((size_t)c.in / c.G * c.out);
    init_step_sizes(s.data(), w.data(), c.in, c.out, c.G, c.qp, /*mse=*/true);
    std::vector<float> q(w.size());
    std::vector<int8_t> lv(w.size());
    fake_quant_weight(q.data(), w.data(), s.data(), c.in, c.out, c.G, c.qp);
    quantize_weight(lv.data(), w.data(), s.data(), c.in, c.out, c.G, c.qp);
    for (int i = 0; i < c.in; ++i)
      for (int o = 0; o < c.out; ++o) {
        const float so = s[(size_t)(i / c.G) * c.out + o];
        const size_t at = (size_t)i * c.out + o;
        const float l = (float)level(w[at] / so, c.qp);
        ASSERT_EQ(q[at], l * so) << i << "," << o;
        ASSERT_EQ(lv[at], (int8_t)l);
        ASSERT_LE(std::abs(lv[at]), c.qp);
      }
  }
}

TEST(QuantOps, StepSizeInit) {
  const int in = 64, out = 40;
  const std::vector<float> w = gaussian((size_t)in * out, 0.02f, 2);
  for (int qp : {127, 7, 1})
    for (int G : {16, 64}) {
      std::vector<float> absmax((size_t)in / G * out), mse(absmax.size());
      init_step_sizes(absmax.data(), w.data(), in, out, G, qp, false);
      init_step_sizes(mse.data(), w.data(), in, out, G, qp, true);
      for (int g = 0; g < in / G; ++g)
        for (int o = 0; o < out; ++o) {
          float m = 0;
          for (int i = g * G; i < (g + 1) * G; ++i)
            m = std::fmax(m, std::fabs(w[(size_t)i * out + o]));
          EXPECT_EQ(absmax[(size_t)g * out + o], m / (float)qp);
        }
      QuantError ea, em;
      add_quant_error(ea, w.data(), absmax.data(), in, out, G, qp);
      add_quant_error(em, w.data(), mse.data(), in, out, G, qp);
      EXPECT_EQ(ea.clipped, 0) << "absmax never clips";
      EXPECT_LE(em.abs_diff, ea.abs_diff * 1.05) << qp << " " << G;  // MSE-best, near L1-best
      const double rel = em.abs_diff / em.abs_w, bound = qp == 127 ? 0.01 : qp == 7 ? 0.13 : 0.5;
      EXPECT_LT(rel, bound) << qp << " " << G;
    }
  std::vector<float> zero(16 * 3, 0.0f), s(3);
  init_step_sizes(s.data(), zero.data(), 16, 3, 16, 7, true);
  for (float x : s) EXPECT_EQ(x, kMinStep);
}

TEST(QuantOps, LsqBackwardIsTheClosedForm) {
  for (const Case& c : kCases) {
    const std::vector<float> w = gaussian((size_t)c.in * c.out, 0.02f, 3);
    const std::vector<float> g = gaussian(w.size(), 1.0f, 4);
    std::vector<float> s((size_t)c.in / c.G * c.out);
    init_step_sizes(s.data(), w.data(), c.in, c.out, c.G, c.qp, true);
    for (float& x : s) x *= 0.8f;  // some weights clipped on both sides
    std::vector<float> dw = gaussian(w.size(), 1.0f, 5), ds = gaussian(s.size(), 1.0f, 6);
    std::vector<double> want_dw(dw.begin(), dw.end()), want_ds(ds.begin(), ds.end());
    const double gscale = 1.0 / std::sqrt((double)c.G * c.qp);
    int clipped = 0;
    for (int i = 0; i < c.in; ++i)
      for (int o = 0; o < c.out; ++o) {
        const size_t at = (size_t)i * c.out + o, sa = (size_t)(i / c.G) * c.out + o;
        const double v = (double)(w[at] / s[sa]);
        if (std::fabs(v) > c.qp * (1 + 1e-6)) {
          want_ds[sa] += gscale * g[at] * (v < 0 ? -c.qp : c.qp);
          ++clipped;
        } else {
          want_dw[at] += g[at];
          want_ds[sa] += gscale * g[at] * (std::nearbyint(v) - v);
        }
      }
    EXPECT_GT(clipped, 0);
    fake_quant_weight_backward(dw.data(), ds.data(), g.data(), w.data(), s.data(), c.in, c.out, c.G,
                               c.qp);
    for (size_t i = 0; i < dw.size(); ++i) ASSERT_NEAR(dw[i], want_dw[i], 1e-5);
    for (size_t i = 0; i < ds.size(); ++i) ASSERT_NEAR(ds[i], want_ds[i], 1e-4) << i;
  }
}

// Where every weight of a group is clipped, q = +-qp s is smooth in s: the LSQ gradient (without
// its gscale) is the true derivative, and zero reaches the weights.
TEST(QuantOps, LsqClippedGradientMatchesFiniteDifferences) {
  const int in = 8, out = 3, G = 4, qp = 7;
  std::vector<float> w = gaussian((size_t)in * out, 1.0f, 7);
  for (float& x : w) x = x >= 0 ? 1.0f + std::fabs(x) : -1.0f - std::fabs(x);  // |w| > 1
  std::vector<float> s((size_t)in / G * out, 0.1f);  // |w / s| > 10 > qp: all clipped
  const std::vector<float> g = gaussian(w.size(), 1.0f, 8);
  auto loss = [&](const std::vector<float>& sv) {
    std::vector<float> q(w.size());
    fake_quant_weight(q.data(), w.data(), sv.data(), in, out, G, qp);
    double l = 0;
    for (size_t i = 0; i < q.size(); ++i) l += (double)q[i] * g[i];
    return l;
  };
  std::vector<float> dw(w.size(), 0.0f), ds(s.size(), 0.0f);
  fake_quant_weight_backward(dw.data(), ds.data(), g.data(), w.data(), s.data(), in, out, G, qp);
  const double gscale = 1.0 / std::sqrt((double)G * qp);
  for (float x : dw) EXPECT_EQ(x, 0.0f);
  for (size_t k = 0; k < s.size(); ++k) {
    std::vector<float> hi = s, lo = s;
    hi[k] += 1e-3f, lo[k] -= 1e-3f;
    const double fd = (loss(hi) - loss(lo)) / (double)(hi[k] - lo[k]);
    EXPECT_NEAR(ds[k] / gscale, fd, 1e-3 * std::fmax(1.0, std::fabs(fd))) << k;
  }
}

TEST(QuantOps, TokenQuantization) {
  const int n = 6, d = 20;
  std::vector<float> x = gaussian((size_t)n * d, 3.0f, 9);
  for (int j = 0; j < d; ++j) x[(size_t)2 * d + j] = 0.0f;  // an all-zero row stays zero
  std::vector<int8_t> xi(x.size());
  std::vector<float> sx(n), fq = x;
  quantize_rows(xi.data(), sx.data(), x.data(), n, d);
  fake_quant_rows(fq.data(), n, d);
  for (int r = 0; r < n; ++r) {
    float m = 0;
    for (int j = 0; j < d; ++j) m = std::fmax(m, std::fabs(x[(size_t)r * d + j]));
    EXPECT_EQ(sx[r], m / 127.0f);
    for (int j = 0; j < d; ++j) {
      const size_t at = (size_t)r * d + j;
      if (m > 0) {
        ASSERT_EQ(xi[at], (int8_t)level(x[at] / (m / 127.0f), 127));
        ASSERT_EQ(fq[at], (float)xi[at] * sx[r]);
        ASSERT_LE(std::fabs(fq[at] - x[at]), 0.5f * sx[r] * 1.0001f);
      } else {
        ASSERT_EQ(fq[at], 0.0f);
      }
    }
  }
  // Quantizing the quantized rows gives the same levels (integer eval of fake-quantized inputs).
  std::vector<int8_t> again(x.size());
  std::vector<float> sx2(n);
  quantize_rows(again.data(), sx2.data(), fq.data(), n, d);
  EXPECT_EQ(again, xi);
}

TEST(QuantOps, Int8LinearIsExact) {
  std::mt19937 rng(10);
  std::uniform_int_distribution<int> lv(-127, 127);
  for (auto [n, in, out, G] :
       {std::array<int, 4>{5, 32, 7, 8}, {3, 48, 9, 48}, {1, 16, 33, 4}, {4, 64, 40, 64}}) {
    std::vector<int8_t> xi((size_t)n * in), wi((size_t)in * out);
    for (auto& v : xi) v = (int8_t)lv(rng);
    for (auto& v : wi) v = (int8_t)lv(rng);
    std::vector<float> sx = gaussian(n, 1.0f, 11), s = gaussian((size_t)in / G * out, 1.0f, 12);
    std::vector<float> y = gaussian((size_t)n * out, 1.0f, 13), y0 = y;
    int8_linear_forward(y.data(), xi.data(), sx.data(), wi.data(), s.data(), n, in, out, G, true);
    for (int r = 0; r < n; ++r)
      for (int o = 0; o < out; ++o) {
        double want = y0[(size_t)r * out + o];
        for (int g = 0; g < in / G; ++g) {
          int64_t acc = 0;  // the exact group sum
          for (int i = g * G; i < (g + 1) * G; ++i)
            acc += (int64_t)xi[(size_t)r * in + i] * wi[(size_t)i * out + o];
          want += (double)sx[r] * s[(size_t)g * out + o] * (double)acc;
        }
        ASSERT_NEAR(y[(size_t)r * out + o], want, 1e-4 * std::fmax(1.0, std::fabs(want)));
      }
    int8_linear_forward(y.data(), xi.data(), sx.data(), wi.data(), s.data(), n, in, out, G, false);
    std::vector<float> z((size_t)n * out, 0.0f);
    int8_linear_forward(z.data(), xi.data(), sx.data(), wi.data(), s.data(), n, in, out, G, true);
    EXPECT_EQ(y, z) << "= is += onto zeros";
    // The VNNI kernel on the packed weight (where the CPU has it): the same integer sums.
    const Int8Packed packed = pack_int8_weight(wi.data(), in, out, G);
    EXPECT_EQ(packed.empty(), !int8_vnni_available() || G % 4 != 0);
    EXPECT_TRUE(pack_int8_weight(wi.data(), in, out, G, /*vnni=*/false).empty());
    if (!packed.empty()) {
      std::vector<float> v = y0;
      int8_linear_forward(v.data(), xi.data(), sx.data(), packed, s.data(), n, true);
      for (size_t i = 0; i < v.size(); ++i)
        ASSERT_NEAR(v[i], y0[i] + (z[i]), 1e-5 * std::fmax(1.0f, std::fabs(v[i]))) << i;
    }
  }
}

}  // namespace
}  // namespace zt
