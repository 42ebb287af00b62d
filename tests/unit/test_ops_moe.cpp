// test_ops_moe.cpp: facts particular to the MoE ops, beyond the table of test_ops.cpp: the
// router's tie-breaking, NaN handling and renormalised gates, the backward from dprobs alone, the
// aux loss of a balanced routing, and the routing plan: against its reference, and capacity
// dropping on hand-made routings whose dropped assignments are known.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "model/ops/ops.h"
#include "model/ops/reference_moe.h"
#include "tests/unit/grad_check.h"
#include "tests/unit/moe_inputs.h"

namespace zt {
namespace {

using test::max_norm_err;
using test::numeric_grad;
using test::random_vec;
using test::route;
using test::separated_logits;
using test::to_double;
using test::to_float;

void expect_same_plan(const MoePlan& a, const MoePlan& b) {
  EXPECT_EQ(a.n, b.n);
  EXPECT_EQ(a.E, b.E);
  EXPECT_EQ(a.K, b.K);
  EXPECT_EQ(a.offset, b.offset);
  EXPECT_EQ(a.token, b.token);
  EXPECT_EQ(a.slot, b.slot);
  EXPECT_EQ(a.dropped, b.dropped);
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

TEST(MoeAuxLoss, BalancedRoutingGivesAlpha) {
  // uniform probs and a perfectly even assignment: E * sum_i (1/E)(1/E) = 1
  const int n = 4, E = 4, K = 1;
  std::vector<double> probs((size_t)n * E, 0.25);
  std::vector<int32_t> idx = {0, 1, 2, 3};
  EXPECT_NEAR(ref::moe_aux_loss_forward(probs.data(), idx.data(), n, E, K, 0.01), 0.01, 1e-15);
  std::vector<float> fp(probs.begin(), probs.end());
  EXPECT_NEAR(moe_aux_loss_forward(fp.data(), idx.data(), n, E, K, 0.01f), 0.01, 1e-8);
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

}  // namespace
}  // namespace zt
