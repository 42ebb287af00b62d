// test_plan.cpp: the planner's enumeration, its refusals and its ranking (parallel/plan/). That
// its figures are the runtime's: tests/mpi/test_plan.cpp (counters) and tests/e2e/plan.sh (runs
// of the flags it prints).
#include <gtest/gtest.h>

#include <set>

#include "parallel/plan/layout_plan.h"
#include "runtime/error.h"

namespace zt {
namespace {

PlanRun small_run() {
  PlanRun r;
  r.model.vocab = 48, r.model.layers = 4, r.model.model_dim = 16, r.model.heads = 4;
  r.model.ffn_dim = 24, r.model.experts = 4, r.model.expert_ffn_dim = 8, r.model.seq_len = 8;
  r.micro_batch = 2, r.grad_accum = 4;
  return r;
}

TEST(Planner, ListsEveryLayoutTrainAcceptsOnce) {
  const PlanRun run = small_run();
  const std::vector<LayoutCost> all = plan_layouts(run, 8, 0, {}, default_rates("cpu"));
  std::set<std::string> seen, bases;
  for (const LayoutCost& c : all) {
    const PlanLayout& l = c.layout;
    EXPECT_EQ(plan_layout_error(l, run, 8), "") << l.name();
    EXPECT_TRUE(seen.insert(l.name()).second) << "twice: " << l.name();
    EXPECT_EQ(l.dp * l.tp * l.pp, 8);
    bases.insert(cat(l.dp, "x", l.tp, "x", l.pp, "x", l.ep));
  }
  // tp in {1, 2, 4, 8} and pp in {1, 2, 4} (8 > --layers) where tp x pp divides 8; ep divides dp
  // and the 4 experts; tp 8 does not divide --heads 4.
  const std::set<std::string> want = {"8x1x1x1", "8x1x1x2", "8x1x1x4", "4x2x1x1", "4x2x1x2",
                                      "4x2x1x4", "2x4x1x1", "2x4x1x2", "4x1x2x1", "4x1x2x2",
                                      "4x1x2x4", "2x2x2x1", "2x2x2x2", "1x4x2x1", "2x1x4x1",
                                      "2x1x4x2", "1x2x4x1"};
  EXPECT_EQ(bases, want);
  // Offload to CPU memory is no variant on --device cpu; NVMe is, and parameters only at stage 3.
  for (const LayoutCost& c : all) {
    EXPECT_NE(c.layout.offload_optimizer, "cpu");
    if (c.layout.offload_params != "none") {
      EXPECT_EQ(c.layout.zero_stage, 3);
    }
  }
}

TEST(Planner, RefusesWhatTrainRefuses) {
  const PlanRun run = small_run();
  auto err = [&](PlanLayout l, int world) { return plan_layout_error(l, run, world); };
  PlanLayout l;
  l.dp = 2, l.tp = 3;
  EXPECT_NE(err(l, 6).find("--tp"), std::string::npos) << err(l, 6);
  l = {}, l.dp = 3, l.ep = 3;
  EXPECT_NE(err(l, 3).find("--ep 3"), std::string::npos) << err(l, 3);
  l = {}, l.dp = 2, l.sequence_parallel = true;
  EXPECT_NE(err(l, 2).find("--sequence-parallel"), std::string::npos);
  l = {}, l.dp = 2, l.offload_params = "nvme", l.zero_stage = 1;
  EXPECT_NE(err(l, 2).find("--zero-stage 3"), std::string::npos);
  l = {}, l.pp = 8;
  EXPECT_NE(err(l, 8), "");  // 8 stages of 4 blocks
  l = {}, l.pp = 4, l.schedule = "interleaved", l.virtual_stages = 2;
  EXPECT_NE(err(l, 4), "");  // 8 virtual stages of 4 blocks
  l = {}, l.dp = 3;
  EXPECT_NE(err(l, 4).find("world"), std::string::npos);
}

TEST(Planner, RanksLayoutsThatFitFirstAndOffloadShrinksTheRank) {
  const PlanRun run = small_run();
  const std::vector<LayoutCost> all = plan_layouts(run, 4, 0, {}, default_rates("cpu"));
  int64_t lo = all[0].mem.peak, hi = lo;
  for (const LayoutCost& c : all) lo = std::min(lo, c.mem.peak), hi = std::max(hi, c.mem.peak);
  ASSERT_LT(lo, hi);
  const int64_t budget = (lo + hi) / 2;
  const std::vector<LayoutCost> ranked = plan_layouts(run, 4, budget, {}, default_rates("cpu"));
  bool seen_unfit = false;
  for (const LayoutCost& c : ranked) {
    EXPECT_EQ(c.fits, c.mem.peak <= budget);
    if (!c.fits) seen_unfit = true;
    EXPECT_FALSE(seen_unfit && c.fits) << "a layout that fits after one that does not";
  }
  PlanLayout mem, nvme;
  mem.dp = 4, mem.zero_stage = 3;
  nvme = mem;
  nvme.offload_optimizer = nvme.offload_params = "nvme";
  PlanRun bench;  // the bench shape: its state is larger than the offload's staging tiles
  const PlanMemory a = predict_memory(mem, bench), b = predict_memory(nvme, bench);
  EXPECT_LT(b.optim, a.optim);
  EXPECT_LT(b.params, a.params);
  EXPECT_EQ(b.grads, a.grads);
  PlanLimits lim;
  lim.tp_max = 1, lim.pp_max = 1, lim.ep_max = 1, lim.offload = false;
  for (const LayoutCost& c : plan_layouts(run, 4, 0, lim, default_rates("cpu")))
    EXPECT_EQ(c.layout.name().find("tp"), std::string::npos) << c.layout.name();
}

}  // namespace
}  // namespace zt
