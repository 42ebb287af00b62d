// Expert parallelism against one process (SPEC section 6: every layout gives the single process's
// losses and parameters up to float reduction order, fp32 1e-5).
//  - Dispatch and combine: every rank of an ep group runs the MoE model on its own tokens with its
//    share of the experts, the rows exchanged by all-to-all-v; one process runs the whole model on
//    each rank's tokens. Per rank: the loss, aux loss, dropped assignments, load and every
//    residual-stream activation equal the one-process run on its tokens; the gradients of what
//    the rank holds whole (attention, norms, router, shared expert) equal that run's; each held
//    expert's gradient equals the sum over the group's ranks of the one-process gradients (what
//    the rows of every rank contribute). Top-k 1 and 2, dropless and capacity dropping, and a
//    router skewed so that every token goes to experts 0..top-k-1: the ranks holding none of them
//    receive no rows, yet enter every exchange.
//  - Training (tests/mpi/layout_run.h): 20 steps of ep 2 and 4 at every ZeRO stage, dropless and
//    with capacity dropping, ep with tp and with pp, and (8 ranks) tp2 x pp2 x dp2 with ep2,
//    against one process: losses, gradient norms and load per step, every rank's units at the end.
#include <gtest/gtest.h>

#include <cmath>

#include "mpi_test.h"
#include "runtime/error.h"
#include "tests/model_run.h"
#include "tests/mpi/layout_run.h"
#include "tests/mpi/small_moe.h"

namespace zt::test {
namespace {

double max_rel_err(const float* a, const float* b, int64_t n) {
  double worst = 0, scale = 1e-3;
  for (int64_t i = 0; i < n; ++i) scale = std::max(scale, (double)std::fabs(b[i]));
  for (int64_t i = 0; i < n; ++i) worst = std::max(worst, (double)std::fabs(a[i] - b[i]));
  return worst / scale;
}

ModelConfig dispatch_config(int top_k, double capacity) {
  ModelConfig c = small_moe_config(2);
  c.experts = 4;
  c.top_k = top_k;
  c.capacity_factor = capacity;
  return c;
}

// Every token's router prefers experts 0..top_k-1: a large constant in feature 0 of every
// embedding row, and a router that reads feature 0 as a strong vote for them. The ranks holding
// none of them receive no rows.
void skew_router(Model& m) {
  const ModelConfig& c = m.cfg;
  for (int64_t v = 0; v < c.vocab; ++v) m.param("embed")[v * c.model_dim] = 20.0f;
  for (int l = 0; l < c.layers; ++l) {
    if (!c.is_moe(l)) continue;
    float* r = m.param(cat("blocks.", l, ".moe.router"));  // [d, E]
    for (int e = 0; e < c.experts; ++e) r[e] = e < c.top_k ? 2.0f : -2.0f;
  }
}

void check_dispatch(int ep, int top_k, double capacity, bool skew) {
  ProcessGrid grid(world(), 1, 1, ep);
  Communicator& group = grid.ep();
  const int me = group.rank();
  const ModelConfig cfg = dispatch_config(top_k, capacity);
  ExpertParallel hook(group);
  Model whole(cfg, 5), split(cfg, 5, true, {}, {}, ExpertSlice{ep, me});
  split.ep = &hook;
  if (skew) skew_router(whole), skew_router(split);
  const int B = 3, T = cfg.seq_len;
  auto tokens = [&](int rank) {  // each rank's own microbatch
    std::vector<int32_t> tok((size_t)B * (T + 1));
    for (int b = 0; b < B; ++b) sample_tokens(rank * 11 + b, T, cfg.vocab, &tok[b * (T + 1)]);
    return tok;
  };
  const std::string what = cat("ep ", ep, " top-k ", top_k, " capacity ", capacity,
                               skew ? " skewed" : "", " on ep rank ", me);
  ModelRun rs(split);
  split.zero_grads();
  const std::vector<int32_t> mine = tokens(me);
  const LossParts ls = rs.forward(mine.data(), B, T);
  rs.backward(0.7f);
  // One process: each rank's tokens in turn; the experts' gradients summed over the group's ranks.
  std::vector<std::vector<float>> expert_sum(whole.table.num_units());
  LossParts lw;
  std::vector<std::vector<float>> hidden, own_grads;
  ModelRun rw(whole);
  for (int r = 0; r < ep; ++r) {
    whole.zero_grads();
    const std::vector<int32_t> t = tokens(r);
    const LossParts lp = rw.forward(t.data(), B, T);
    rw.backward(0.7f);
    for (int u = 0; u < whole.table.num_units(); ++u) {
      const int64_t n = whole.table.unit_numel(u);
      const float* g = whole.unit_grads[u];
      if (whole.table.units[u].kind == UnitKind::experts) {
        expert_sum[u].resize(n, 0.0f);
        for (int64_t i = 0; i < n; ++i) expert_sum[u][i] += g[i];
      }
    }
    if (r != me) continue;
    lw = lp;
    for (int i = 0; i <= cfg.layers; ++i)
      hidden.emplace_back(rw.hidden(i), rw.hidden(i) + (int64_t)B * T * cfg.model_dim);
    for (int u = 0; u < whole.table.num_units(); ++u)
      own_grads.emplace_back(whole.unit_grads[u], whole.unit_grads[u] + whole.table.unit_numel(u));
  }
  EXPECT_LT(rel_diff(ls.ce, lw.ce), 1e-6) << what;
  EXPECT_LT(rel_diff(ls.aux, lw.aux), 1e-6) << what;
  EXPECT_EQ(ls.dropped, lw.dropped) << what;
  EXPECT_EQ(ls.load, lw.load) << what;
  if (capacity > 0 && skew) {
    EXPECT_GT(ls.dropped, 0) << what << ": nothing was dropped";
  }
  for (int i = 0; i <= cfg.layers; ++i)
    EXPECT_LT(max_rel_err(rs.hidden(i), hidden[i].data(), (int64_t)hidden[i].size()), 1e-5)
        << what << ": hidden " << i;
  for (int l = 0; l < cfg.layers; ++l) {
    if (!cfg.is_moe(l)) continue;
    const int received = rs.acts.blocks[l].route.rows();
    const bool preferred = split.dims.expert0 < top_k;  // holds one of experts 0..top_k-1
    if (!skew) continue;
    if (preferred) {
      EXPECT_GT(received, 0) << what << ": block " << l;
    } else {
      EXPECT_EQ(received, 0) << what << ": block " << l;
    }
  }
  for (const ParamSpec& p : split.table.params) {
    const ParamSpec& w = whole.table.at(p.name);
    const float* want =
        (p.expert >= 0 ? expert_sum[w.unit].data() : own_grads[w.unit].data()) + w.offset;
    EXPECT_LT(max_rel_err(split.grad(p.name), want, p.numel), 1e-5) << what << ": " << p.name;
  }
  // Only the rank's experts are in its table.
  for (int e = 0; e < cfg.experts; ++e)
    EXPECT_EQ(split.table.find(cat("blocks.1.moe.experts.", e, ".w1")) >= 0,
              e / (cfg.experts / ep) == me)
        << what << ": expert " << e;
}

std::vector<int> ep_sizes() {
  std::vector<int> out;
  for (int ep : {2, 4})
    if (world().size() % ep == 0) out.push_back(ep);
  return out;
}

TEST(ExpertParallel, DispatchAndCombineMatchTheOneProcessOp) {
  if (ep_sizes().empty()) GTEST_SKIP() << "needs 2 or 4 ranks";
  for (int ep : ep_sizes())
    for (int top_k : {1, 2})
      for (double capacity : {0.0, 1.0})
        for (bool skew : {false, true}) check_dispatch(ep, top_k, capacity, skew);
}

TEST(ExpertParallel, TrainingMatchesOneProcessAtEveryZeroStage) {
  if (ep_sizes().empty()) GTEST_SKIP() << "needs 2 or 4 ranks";
  for (int ep : ep_sizes())
    for (int stage : {0, 1, 2, 3}) {
      LayoutCase k;
      k.ep = ep, k.experts = 4, k.stage = stage, k.layers = 3, k.M = 2;
      k.capacity = stage == 2 ? 1.0 : 0.0;
      run_layout(k);
    }
}

TEST(ExpertParallel, ComposesWithTensorAndPipelineParallelism) {
  if (world().size() != 4) GTEST_SKIP() << "needs 4 ranks";
  LayoutCase tp;  // tp2 x dp2, ep2: each tp rank's expert slices over its ep group
  tp.tp = 2, tp.ep = 2, tp.experts = 4, tp.stage = 3, tp.layers = 3, tp.M = 2, tp.untie = true;
  run_layout(tp);
  LayoutCase pp;  // pp2 x dp2, ep2, zero-bubble: the ep exchanges inside each stage's passes
  pp.pp = 2, pp.ep = 2, pp.experts = 4, pp.stage = 1, pp.kind = PipeScheduleKind::zero_bubble;
  pp.capacity = 1.0;
  run_layout(pp);
}

TEST(ExpertParallel, FourDimensionalGrid) {
  if (world().size() != 8) GTEST_SKIP() << "needs 8 ranks";
  LayoutCase k;  // tp2 x pp2 x dp2 with ep2
  k.pp = 2, k.tp = 2, k.ep = 2, k.experts = 4, k.stage = 2, k.M = 2;
  run_layout(k);
  k.stage = 3, k.kind = PipeScheduleKind::zero_bubble, k.capacity = 1.0;
  run_layout(k);
}

}  // namespace
}  // namespace zt::test
