/*
 * test_ops_moe.cpp: the MoE ops (router, aux loss, plan, dispatch, combine).
 * The double references' backward passes must match finite differences of L = sum(out * w); the
 * fp32 ops must match the references on odd sizes (n=13, E=5, d=7, K = 1, 2, E); capacity
 * dropping is checked on hand-made routings whose dropped assignments are known.
 */
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "model/ops/ops.h"
#include "model/ops/reference_moe.h"
#include "tests/unit/grad_check.h"

namespace zt {
namespace {

using test::max_norm_err;
using test::numeric_grad;
using test::random_vec;
using test::to_double;
using test::to_float;

// Logits whose per-token ranking is a rotation of the experts with gaps of 0.6 (noise 0.05):
// top-k never changes under a finite-difference step, and fp32 and double agree on it.
std::vector<double> separated_logits(int n, int E, uint64_t seed) {
  int a = 1;
  for (int c = 2; c < E; ++c)
    if (std::gcd(c, E) == 1) {
      a = c;
      break;
    }
  std::vector<double> noise = random_vec((size_t)n * E, seed, 0.05);
  std::vector<double> l((size_t)n * E);
  for (int i = 0; i < n; ++i)
    for (int e = 0; e < E; ++e) l[i * E + e] = 0.6 * ((e * a + i) % E) + noise[i * E + e];
  return l;
}

std::vector<int32_t> route(const std::vector<double>& logits, int n, int E, int K) {
  std::vector<double> probs((size_t)n * E), gates((size_t)n * K);
  std::vector<int32_t> idx((size_t)n * K);
  ref::router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, true);
  return idx;
}

void expect_same_plan(const MoePlan& a, const MoePlan& b) {
  EXPECT_EQ(a.n, b.n);
  EXPECT_EQ(a.E, b.E);
  EXPECT_EQ(a.K, b.K);
  EXPECT_EQ(a.offset, b.offset);
  EXPECT_EQ(a.token, b.token);
  EXPECT_EQ(a.slot, b.slot);
  EXPECT_EQ(a.dropped, b.dropped);
}

// ---------------------------------------------------------------------------------------------
// references vs finite differences

TEST(RouterRef, BackwardMatchesNumeric) {
  const int n = 6, E = 5;
  for (int K : {1, 2, 3, E})
    for (bool renorm : {false, true})
      for (bool with_dprobs : {false, true}) {
        std::vector<double> logits = separated_logits(n, E, 11);
        std::vector<double> wg = random_vec((size_t)n * K, 12), wp = random_vec((size_t)n * E, 13);
        std::vector<double> probs((size_t)n * E), gates((size_t)n * K);
        std::vector<int32_t> idx((size_t)n * K), idx0;
        auto L = [&]() {
          ref::router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K,
                              renorm);
          EXPECT_EQ(idx, idx0);  // the selection must not move under the perturbation
          return test::dot(gates, wg) + (with_dprobs ? test::dot(probs, wp) : 0.0);
        };
        ref::router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, renorm);
        idx0 = idx;
        std::vector<double> dl((size_t)n * E, 0.0);
        ref::router_backward(dl.data(), wg.data(), with_dprobs ? wp.data() : nullptr, probs.data(),
                             idx.data(), n, E, K, renorm);
        std::vector<double> num = numeric_grad(L, logits);
        EXPECT_LT(max_norm_err(dl, num), 1e-7)
            << "K=" << K << " renorm=" << renorm << " dprobs=" << with_dprobs;
      }
}

TEST(MoeAuxLossRef, BackwardMatchesNumeric) {
  const int n = 7, E = 4, K = 2;
  std::vector<double> logits = separated_logits(n, E, 21);
  std::vector<double> probs((size_t)n * E), gates((size_t)n * K);
  std::vector<int32_t> idx((size_t)n * K);
  ref::router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, true);
  const double alpha = 0.01, w = 1.7;  // L = w * loss
  auto L = [&]() {
    return w * ref::moe_aux_loss_forward(probs.data(), idx.data(), n, E, K, alpha);
  };
  std::vector<double> dp((size_t)n * E, 0.0);
  ref::moe_aux_loss_backward(dp.data(), idx.data(), n, E, K, alpha, w);
  EXPECT_LT(max_norm_err(dp, numeric_grad(L, probs)), 1e-7);
}

TEST(MoeAuxLossRef, BalancedRoutingGivesAlpha) {
  // uniform probs and a perfectly even assignment: E * sum_i (1/E)(1/E) = 1
  const int n = 4, E = 4, K = 1;
  std::vector<double> probs((size_t)n * E, 0.25);
  std::vector<int32_t> idx = {0, 1, 2, 3};
  EXPECT_NEAR(ref::moe_aux_loss_forward(probs.data(), idx.data(), n, E, K, 0.01), 0.01, 1e-15);
}

TEST(MoeDispatchRef, BackwardMatchesNumeric) {
  const int n = 9, E = 4, K = 2, d = 3;
  std::vector<int32_t> idx = route(separated_logits(n, E, 31), n, E, K);
  for (int capacity : {0, 3}) {
    MoePlan plan;
    ref::moe_plan(plan, idx.data(), n, E, K, capacity);
    std::vector<double> x = random_vec((size_t)n * d, 32), xe((size_t)plan.rows() * d);
    std::vector<double> w = random_vec(xe.size(), 33);
    auto L = [&]() {
      ref::moe_dispatch_forward(xe.data(), x.data(), plan, d);
      return test::dot(xe, w);
    };
    std::vector<double> dx(x.size(), 0.0);
    ref::moe_dispatch_backward(dx.data(), w.data(), plan, d);
    EXPECT_LT(max_norm_err(dx, numeric_grad(L, x)), 1e-7) << "capacity " << capacity;
  }
}

TEST(MoeCombineRef, BackwardMatchesNumeric) {
  const int n = 9, E = 4, K = 2, d = 3;
  std::vector<int32_t> idx = route(separated_logits(n, E, 41), n, E, K);
  for (int capacity : {0, 3}) {
    MoePlan plan;
    ref::moe_plan(plan, idx.data(), n, E, K, capacity);
    std::vector<double> ye = random_vec((size_t)plan.rows() * d, 42);
    std::vector<double> gates = random_vec((size_t)n * K, 43, 0.3, 0.5);
    std::vector<double> w = random_vec((size_t)n * d, 44), out((size_t)n * d);
    auto L = [&]() {
      std::fill(out.begin(), out.end(), 0.0);
      ref::moe_combine_forward(out.data(), ye.data(), gates.data(), plan, d);
      return test::dot(out, w);
    };
    std::vector<double> dye(ye.size(), 0.0), dg(gates.size(), 0.0);
    ref::moe_combine_backward(dye.data(), dg.data(), w.data(), ye.data(), gates.data(), plan, d);
    EXPECT_LT(max_norm_err(dye, numeric_grad(L, ye)), 1e-7) << "capacity " << capacity;
    EXPECT_LT(max_norm_err(dg, numeric_grad(L, gates)), 1e-7) << "capacity " << capacity;
  }
}

// ---------------------------------------------------------------------------------------------
// fp32 ops vs references, odd sizes

TEST(Router, MatchesReference) {
  const int n = 13, E = 5;
  for (int K : {1, 2, E})
    for (bool renorm : {false, true})
      for (bool with_dprobs : {false, true}) {
        std::vector<float> logits = to_float(separated_logits(n, E, 51));
        std::vector<float> probs((size_t)n * E), gates((size_t)n * K);
        std::vector<int32_t> idx((size_t)n * K);
        router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, renorm);
        std::vector<double> rprobs((size_t)n * E), rgates((size_t)n * K);
        std::vector<int32_t> ridx((size_t)n * K);
        ref::router_forward(rprobs.data(), ridx.data(), rgates.data(), to_double(logits).data(), n,
                            E, K, renorm);
        EXPECT_EQ(idx, ridx);
        EXPECT_LT(max_norm_err(probs, rprobs), 1e-6);
        EXPECT_LT(max_norm_err(gates, rgates), 1e-6);

        std::vector<float> dg = to_float(random_vec((size_t)n * K, 52));
        std::vector<float> dp = to_float(random_vec((size_t)n * E, 53));
        std::vector<float> dl((size_t)n * E, 0.0f);
        router_backward(dl.data(), dg.data(), with_dprobs ? dp.data() : nullptr, probs.data(),
                        idx.data(), n, E, K, renorm);
        std::vector<double> rdl((size_t)n * E, 0.0), rdp = to_double(dp);
        ref::router_backward(rdl.data(), to_double(dg).data(), with_dprobs ? rdp.data() : nullptr,
                             rprobs.data(), ridx.data(), n, E, K, renorm);
        EXPECT_LT(max_norm_err(dl, rdl), 1e-5)
            << "K=" << K << " renorm=" << renorm << " dprobs=" << with_dprobs;
      }
}

TEST(Router, DprobsOnlyMatchesReference) {
  const int n = 13, E = 5, K = 2;
  std::vector<float> logits = to_float(separated_logits(n, E, 55));
  std::vector<float> probs((size_t)n * E), gates((size_t)n * K);
  std::vector<int32_t> idx((size_t)n * K);
  router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, true);
  std::vector<float> dp = to_float(random_vec((size_t)n * E, 56)), dl((size_t)n * E, 0.0f);
  router_backward(dl.data(), nullptr, dp.data(), probs.data(), idx.data(), n, E, K, true);
  std::vector<double> rdl((size_t)n * E, 0.0);
  ref::router_backward(rdl.data(), (const double*)nullptr, to_double(dp).data(),
                       to_double(probs).data(), idx.data(), n, E, K, true);
  EXPECT_LT(max_norm_err(dl, rdl), 1e-5);
}

TEST(Router, TiesGoToLowerExpertIndex) {
  const int E = 4, K = 2;
  std::vector<float> logits = {0, 0, 0, 0,   // all equal: experts 0, 1
                               1, 3, 3, 0,   // tie at the top: 1 then 2
                               2, 0, 2, 2};  // three-way tie: 0 then 2
  const int n = 3;
  std::vector<float> probs((size_t)n * E), gates((size_t)n * K);
  std::vector<int32_t> idx((size_t)n * K);
  router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, true);
  EXPECT_EQ(idx, (std::vector<int32_t>{0, 1, 1, 2, 0, 2}));
  for (float g : gates) EXPECT_FLOAT_EQ(g, 0.5f);
  std::vector<double> rprobs((size_t)n * E), rgates((size_t)n * K);
  std::vector<int32_t> ridx((size_t)n * K);
  ref::router_forward(rprobs.data(), ridx.data(), rgates.data(), to_double(logits).data(), n, E, K,
                      true);
  EXPECT_EQ(ridx, idx);
}

TEST(Router, NanLogitsStillPickDistinctExperts) {
  const int n = 1, E = 4, K = 3;
  std::vector<float> logits(E, NAN), probs(E), gates(K);
  std::vector<int32_t> idx(K);
  router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, true);
  EXPECT_EQ(idx, (std::vector<int32_t>{0, 1, 2}));
}

TEST(Router, GatesSumToOneWhenRenormalised) {
  const int n = 13, E = 5, K = 2;
  std::vector<float> logits = to_float(random_vec((size_t)n * E, 57, 2.0));
  std::vector<float> probs((size_t)n * E), gates((size_t)n * K);
  std::vector<int32_t> idx((size_t)n * K);
  router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, true);
  for (int i = 0; i < n; ++i) {
    EXPECT_NEAR(gates[i * K] + gates[i * K + 1], 1.0f, 1e-6f);
    EXPECT_GE(probs[i * E + idx[i * K]], probs[i * E + idx[i * K + 1]]);
  }
}

TEST(MoeAuxLoss, MatchesReference) {
  const int n = 13, E = 5;
  for (int K : {1, 2, E}) {
    std::vector<float> logits = to_float(random_vec((size_t)n * E, 61, 1.5));
    std::vector<float> probs((size_t)n * E), gates((size_t)n * K);
    std::vector<int32_t> idx((size_t)n * K);
    router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, true);
    std::vector<double> rprobs = to_double(probs);
    float loss = moe_aux_loss_forward(probs.data(), idx.data(), n, E, K, 0.01f);
    double rloss = ref::moe_aux_loss_forward(rprobs.data(), idx.data(), n, E, K, 0.01);
    EXPECT_NEAR(loss, rloss, 1e-6 * std::fabs(rloss)) << "K=" << K;
    std::vector<float> dp = to_float(random_vec((size_t)n * E, 62));  // accumulates onto this
    std::vector<double> rdp = to_double(dp);
    moe_aux_loss_backward(dp.data(), idx.data(), n, E, K, 0.01f, 0.7f);
    ref::moe_aux_loss_backward(rdp.data(), idx.data(), n, E, K, 0.01, 0.7);
    EXPECT_LT(max_norm_err(dp, rdp), 1e-6) << "K=" << K;
  }
}

TEST(MoePlan, MatchesReference) {
  const int n = 13, E = 5;
  for (int K : {1, 2, E})
    for (double c : {0.0, 0.5, 1.0, 1.25}) {
      std::vector<int32_t> idx =
          route(to_double(to_float(random_vec((size_t)n * E, 71, 1.5))), n, E, K);
      int cap = moe_capacity(c, n, K, E);
      MoePlan plan, rplan;
      moe_plan(plan, idx.data(), n, E, K, cap);
      ref::moe_plan(rplan, idx.data(), n, E, K, cap);
      expect_same_plan(plan, rplan);
      EXPECT_EQ(plan.rows() + plan.dropped, n * K);
    }
}

TEST(MoeDispatch, MatchesReference) {
  const int n = 13, E = 5, d = 7;
  for (int K : {1, 2, E})
    for (int cap : {0, 3}) {
      std::vector<int32_t> idx = route(separated_logits(n, E, 81), n, E, K);
      MoePlan plan;
      moe_plan(plan, idx.data(), n, E, K, cap);
      std::vector<float> x = to_float(random_vec((size_t)n * d, 82));
      std::vector<float> xe((size_t)plan.rows() * d);
      std::vector<double> rxe(xe.size());
      moe_dispatch_forward(xe.data(), x.data(), plan, d);
      ref::moe_dispatch_forward(rxe.data(), to_double(x).data(), plan, d);
      EXPECT_EQ(max_norm_err(xe, rxe), 0.0);
      std::vector<float> dxe = to_float(random_vec(xe.size(), 83));
      std::vector<float> dx = to_float(random_vec(x.size(), 84));  // accumulates onto this
      std::vector<double> rdx = to_double(dx);
      moe_dispatch_backward(dx.data(), dxe.data(), plan, d);
      ref::moe_dispatch_backward(rdx.data(), to_double(dxe).data(), plan, d);
      EXPECT_LT(max_norm_err(dx, rdx), 1e-6) << "K=" << K << " cap=" << cap;
    }
}

TEST(MoeCombine, MatchesReference) {
  const int n = 13, E = 5, d = 7;
  for (int K : {1, 2, E})
    for (int cap : {0, 3}) {
      std::vector<int32_t> idx = route(separated_logits(n, E, 91), n, E, K);
      MoePlan plan;
      moe_plan(plan, idx.data(), n, E, K, cap);
      std::vector<float> ye = to_float(random_vec((size_t)plan.rows() * d, 92));
      std::vector<float> gates = to_float(random_vec((size_t)n * K, 93, 0.3, 0.5));
      std::vector<float> out = to_float(random_vec((size_t)n * d, 94));  // out += ...
      std::vector<double> rout = to_double(out);
      moe_combine_forward(out.data(), ye.data(), gates.data(), plan, d);
      ref::moe_combine_forward(rout.data(), to_double(ye).data(), to_double(gates).data(), plan, d);
      EXPECT_LT(max_norm_err(out, rout), 1e-6);
      std::vector<float> dout = to_float(random_vec((size_t)n * d, 95));
      std::vector<float> dye = to_float(random_vec(ye.size(), 96));
      std::vector<float> dg = to_float(random_vec(gates.size(), 97));
      std::vector<double> rdye = to_double(dye), rdg = to_double(dg);
      moe_combine_backward(dye.data(), dg.data(), dout.data(), ye.data(), gates.data(), plan, d);
      ref::moe_combine_backward(rdye.data(), rdg.data(), to_double(dout).data(),
                                to_double(ye).data(), to_double(gates).data(), plan, d);
      EXPECT_LT(max_norm_err(dye, rdye), 1e-6) << "K=" << K << " cap=" << cap;
      EXPECT_LT(max_norm_err(dg, rdg), 1e-6) << "K=" << K << " cap=" << cap;
    }
}

// ---------------------------------------------------------------------------------------------
// capacity

TEST(MoeCapacity, Values) {
  EXPECT_EQ(moe_capacity(1.0, 32, 2, 4), 16);
  EXPECT_EQ(moe_capacity(1.25, 10, 2, 3), 9);  // ceil(8.33)
  EXPECT_EQ(moe_capacity(1.0, 10, 2, 4), 5);   // exact: no rounding up
  EXPECT_EQ(moe_capacity(0.0, 32, 2, 4), 0);   // dropless
  EXPECT_EQ(moe_capacity(2.0, 7, 1, 8), 2);    // ceil(1.75)
}

TEST(MoeCapacity, AllTokensOnOneExpertKeepFirstInTokenOrder) {
  const int n = 6, E = 3, K = 1;
  std::vector<int32_t> idx(n, 0);
  int cap = moe_capacity(1.0, n, K, E);  // 2
  ASSERT_EQ(cap, 2);
  MoePlan plan;
  moe_plan(plan, idx.data(), n, E, K, cap);
  EXPECT_EQ(plan.offset, (std::vector<int32_t>{0, 2, 2, 2}));
  EXPECT_EQ(plan.token, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(plan.slot, (std::vector<int32_t>{0, 0}));
  EXPECT_EQ(plan.dropped, 4);

  // dropped tokens get nothing from combine and no gradient from dispatch
  const int d = 2;
  std::vector<float> ye = {1, 2, 3, 4}, gates(n, 1.0f), out((size_t)n * d, 0.0f);
  moe_combine_forward(out.data(), ye.data(), gates.data(), plan, d);
  EXPECT_EQ(out, (std::vector<float>{1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0}));
  std::vector<float> dxe = {1, 1, 1, 1}, dx((size_t)n * d, 0.0f);
  moe_dispatch_backward(dx.data(), dxe.data(), plan, d);
  EXPECT_EQ(dx, (std::vector<float>{1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(MoeCapacity, TokenOrderNotSlotOrder) {
  // token 0 picks (1, 0), token 1 picks (0, 2), token 2 picks (0, 1); capacity 1.
  // expert 0: token 0 (its second pick) comes first, tokens 1 and 2 are dropped;
  // expert 1: token 0 kept, token 2 dropped; expert 2: token 1 kept.
  const int n = 3, E = 3, K = 2;
  std::vector<int32_t> idx = {1, 0, 0, 2, 0, 1};
  MoePlan plan, rplan;
  moe_plan(plan, idx.data(), n, E, K, 1);
  EXPECT_EQ(plan.offset, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(plan.token, (std::vector<int32_t>{0, 0, 1}));
  EXPECT_EQ(plan.slot, (std::vector<int32_t>{1, 0, 1}));
  EXPECT_EQ(plan.dropped, 3);
  ref::moe_plan(rplan, idx.data(), n, E, K, 1);
  expect_same_plan(plan, rplan);
  // dropless: every assignment has a row, grouped by expert, tokens increasing
  moe_plan(plan, idx.data(), n, E, K, 0);
  EXPECT_EQ(plan.offset, (std::vector<int32_t>{0, 3, 5, 6}));
  EXPECT_EQ(plan.token, (std::vector<int32_t>{0, 1, 2, 0, 2, 1}));
  EXPECT_EQ(plan.slot, (std::vector<int32_t>{1, 0, 0, 0, 1, 1}));
  EXPECT_EQ(plan.dropped, 0);
}

TEST(MoeCapacity, LargeCapacityDropsNothing) {
  const int n = 8, E = 2, K = 2;
  std::vector<int32_t> idx = route(separated_logits(n, E, 101), n, E, K);
  MoePlan a, b;
  moe_plan(a, idx.data(), n, E, K, 0);
  moe_plan(b, idx.data(), n, E, K, n);
  expect_same_plan(a, b);
}

// ---------------------------------------------------------------------------------------------
// accumulate semantics: calling backward twice doubles the gradient

TEST(MoeAccumulate, BackwardTwiceDoubles) {
  const int n = 13, E = 5, K = 2, d = 7;
  std::vector<float> logits = to_float(separated_logits(n, E, 111));
  std::vector<float> probs((size_t)n * E), gates((size_t)n * K);
  std::vector<int32_t> idx((size_t)n * K);
  router_forward(probs.data(), idx.data(), gates.data(), logits.data(), n, E, K, true);
  MoePlan plan;
  moe_plan(plan, idx.data(), n, E, K, 0);
  std::vector<float> dg = to_float(random_vec(gates.size(), 112));
  std::vector<float> dp = to_float(random_vec(probs.size(), 113));
  std::vector<float> dxe = to_float(random_vec((size_t)plan.rows() * d, 114));
  std::vector<float> ye = to_float(random_vec((size_t)plan.rows() * d, 115));
  std::vector<float> dout = to_float(random_vec((size_t)n * d, 116));

  auto twice = [](auto&& backward, size_t size) {
    std::vector<float> once(size, 0.0f), two(size, 0.0f);
    backward(once.data());
    backward(two.data());
    backward(two.data());
    for (auto& x : once) x *= 2;
    return max_norm_err(two, once);
  };
  EXPECT_LT(twice(
                [&](float* g) {
                  router_backward(g, dg.data(), dp.data(), probs.data(), idx.data(), n, E, K, true);
                },
                probs.size()),
            1e-6);
  EXPECT_LT(twice([&](float* g) { moe_aux_loss_backward(g, idx.data(), n, E, K, 0.01f, 1.0f); },
                  probs.size()),
            1e-6);
  EXPECT_LT(twice([&](float* g) { moe_dispatch_backward(g, dxe.data(), plan, d); }, (size_t)n * d),
            1e-6);
  EXPECT_LT(twice(
                [&](float* g) {
                  moe_combine_backward(g, nullptr, dout.data(), ye.data(), gates.data(), plan, d);
                },
                ye.size()),
            1e-6);
  EXPECT_LT(twice(
                [&](float* g) {
                  moe_combine_backward(nullptr, g, dout.data(), ye.data(), gates.data(), plan, d);
                },
                gates.size()),
            1e-6);
}

}  // namespace
}  // namespace zt
