// Pipeline parallelism against one process (SPEC section 6: every layout gives the single
// process's losses and parameters up to float reduction order, fp32 1e-5 over 20 steps).
//
// Each case trains 20 steps of pp x dp (x tp) through the pipeline train step and the ZeRO engine,
// and a one-process model alongside on the same tokens, the step's dp x M microbatches in the
// same order (grad-accum = dp x M): per step, the loss and the gradient norm to 1e-5 relative;
// after the last step, each stage's units against the reference's (the updates' L2 difference over
// the L2 of the reference's update, 3e-4, as in test_tensor.cpp); with a tied head, the
// embedding's two replicas (first and last stage) bitwise equal; the forward-only evaluation
// equal to the reference's. Cases: pp 2 and 4 with each schedule (1f1b, interleaved x2, zb),
// pp2 x dp2 at ZeRO 1, 2 and 3, pp2 x tp2, an untied head, bf16.
#include <gtest/gtest.h>

#include <cmath>

#include "mpi_test.h"
#include "optim/clip.h"
#include "optim/lr_schedule.h"
#include "parallel/pipeline/pipeline_step.h"
#include "parallel/tensor/tensor_parallel.h"
#include "parallel/zero/engine.h"
#include "runtime/error.h"
#include "tests/model_run.h"
#include "tests/mpi/small_moe.h"

namespace zt::test {
namespace {

struct Case {
  int pp, tp = 1, stage = 0;
  PipeScheduleKind kind = PipeScheduleKind::one_f_one_b;
  int V = 1, layers = 4, M = 4;
  bool untie = false;
  DType precision = DType::fp32;
  double tol = 1e-5;
};

std::string describe(const Case& k, int dp) {
  return cat("pp ", k.pp, " dp ", dp, " tp ", k.tp, " ", pipe_schedule_name(k.kind),
             k.V > 1 ? cat(" V ", k.V) : std::string(), " stage ", k.stage, " ",
             dtype_name(k.precision), k.untie ? " untied" : "", " layers ", k.layers);
}

void run_pipeline(const Case& k) {
  ProcessGrid grid(world(), k.tp, k.pp, 1);
  const int dp = grid.dp().size(), rdp = grid.dp().rank(), st = grid.coord().pp;
  ModelConfig cfg = small_moe_config(k.layers);
  cfg.untie_embeddings = k.untie;
  const int B = 2, T = cfg.seq_len, M = k.M, steps = 20;
  const int64_t G = (int64_t)B * M * dp;  // samples per step
  const std::string what = describe(k, dp);
  AdamWConfig ac;
  ac.weight_decay = 0.1f;

  Model ref(cfg, 42);  // one process, grad-accum = dp x M
  ModelRun ref_run(ref);
  const TensorSlice slice{k.tp, grid.coord().tp};
  const PipelineLayout lay = make_pipeline_layout(cfg, k.pp, k.V);
  const std::vector<bool> owned = stage_units(lay, build_param_table(cfg, slice), cfg, st);
  TensorParallel hook(grid.tp());
  Model model(cfg, 42, true, slice, owned);
  if (k.tp > 1) model.tp = &hook;
  ZeroOptions zo;
  zo.stage = k.stage, zo.precision = k.precision;
  ZeroEngine engine(model, grid, zo);
  std::unique_ptr<TrainStep> ts = make_pipeline_step(model, engine, grid, lay, k.kind);
  EXPECT_STREQ(ts->schedule_name(), pipe_schedule_name(k.kind));

  const int U = ref.table.num_units();
  ReferenceOptimizer ref_opt(ref);
  std::vector<int32_t> tok((size_t)B * (T + 1));
  auto fill = [&](int64_t first) {
    for (int b = 0; b < B; ++b) sample_tokens(first + b, T, cfg.vocab, &tok[b * (T + 1)]);
    return tok.data();
  };
  for (int s = 0; s < steps; ++s) {
    const double lr = lr_at(s, 3e-3, 3e-4, 2, steps);
    ref.zero_grads();
    double ref_loss = 0;
    for (int q = 0; q < dp; ++q)
      for (int i = 0; i < M; ++i) {  // dp rank q's microbatch i
        ref_loss += ref_run.forward(fill(s * G + (int64_t)(q * M + i) * B), B, T).loss() / (dp * M);
        ref_run.backward(1.0f / (float)(dp * M));
      }
    const double ref_norm = ref_opt.step(lr, 0.5, ac, s + 1);
    const StepLosses sl = ts->run(
        M, [&](int i) { return fill(s * G + (int64_t)(rdp * M + i) * B); }, B, T);
    const StepStats stats = engine.finish_step(lr, 0.5, ac, s + 1);
    EXPECT_LT(rel_diff(sl.ce + sl.aux, ref_loss), k.tol) << what << " step " << s;
    EXPECT_LT(rel_diff(stats.grad_norm, ref_norm), k.tol) << what << " step " << s;
    EXPECT_GE(ts->wait_ms(), 0.0);
  }

  // Evaluation: forward only through the stages, the same loss on every rank.
  const LossParts ev = ts->evaluate(fill(999), B, T);
  ts->end_evaluation();
  const LossParts ev_ref = ref_run.forward(fill(999), B, T);
  EXPECT_LT(rel_diff(ev.ce, ev_ref.ce), k.tol) << what << ": evaluation";

  // Each stage's units against the reference (every rank of a stage's dp group takes part).
  const Model init(cfg, 42, false);  // the whole model's initial values
  for (int u = 0; u < U; ++u) {
    if (!model.owns(u)) continue;
    std::vector<float> mine;
    engine.gather_unit_state(u, mine, nullptr, nullptr);
    if (k.precision != DType::fp32) continue;  // 16 bits: the losses say it (test_zero.cpp)
    std::vector<float> want(model.table.unit_numel(u)), w0 = want;
    for (const ParamSpec& p : model.table.params) {
      if (p.unit != u) continue;
      copy_slice(p, ref.unit_params[u], want.data());
      copy_slice(p, init.unit_params[u], w0.data());
    }
    for (const ParamSpec& p : model.table.params) {
      if (p.unit != u) continue;
      double diff = 0, moved = 0;
      for (int64_t i = p.offset; i < p.offset + p.numel; ++i) {
        diff += (mine[i] - want[i]) * (mine[i] - want[i]);
        moved += (want[i] - w0[i]) * (want[i] - w0[i]);
      }
      EXPECT_LT(std::sqrt(diff / std::max(moved, 1e-30)), 3e-4)
          << what << ": " << p.name << " on stage " << st;
    }
  }
  // A tied head: the first and the last stage's embeddings are the same bits.
  Communicator& pair = grid.embed();
  if (pair.size() == 2 && !k.untie) {
    std::vector<float> e;
    engine.gather_unit_state(model.embed_unit, e, nullptr, nullptr);
    std::vector<float> first = e;
    pair.broadcast(first.data(), first.size(), DType::fp32, 0).wait();
    EXPECT_EQ(e, first) << what << ": the tied embedding's replicas differ";
  }
}

TEST(Pipeline, EverySchedulesTrainingMatchesOneProcess) {
  const int n = world().size();
  if (n != 2 && n != 4) GTEST_SKIP() << "needs 2 or 4 ranks";
  using K = PipeScheduleKind;
  for (K kind : {K::one_f_one_b, K::zero_bubble}) run_pipeline({n, 1, 0, kind});
  run_pipeline({n, 1, 0, K::interleaved, 2, 2 * n});  // two chunks per stage
  if (n == 2) {
    run_pipeline({2, 1, 0, K::zero_bubble, 1, 4, 4, /*untie=*/true});
    run_pipeline({2, 1, 1, K::one_f_one_b, 1, 4, 3, false, DType::bf16, 3e-2});
    run_pipeline({2, 1, 0, K::one_f_one_b, 1, 3, 1});  // one microbatch, uneven split
  }
}

TEST(Pipeline, ComposesWithZeroAndTensorParallelism) {
  if (world().size() != 4) GTEST_SKIP() << "needs 4 ranks";
  using K = PipeScheduleKind;
  for (int stage : {1, 2, 3})
    run_pipeline({2, 1, stage, stage == 2 ? K::zero_bubble : K::one_f_one_b});
  run_pipeline({2, 1, 3, K::interleaved, 2, 4, 4, /*untie=*/true});
  run_pipeline({2, 2, 0, K::one_f_one_b});  // pp2 x tp2
  run_pipeline({2, 2, 3, K::zero_bubble, 1, 4, 4, true});
}

}  // namespace
}  // namespace zt::test
