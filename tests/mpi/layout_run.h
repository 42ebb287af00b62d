// layout_run.h (tests): one layout of the grid (dp x tp x pp, experts over ep, a ZeRO stage, a
// pipeline schedule) trained against one process (SPEC section 6: every layout gives the single
// process's losses and parameters up to float reduction order, fp32 1e-5 over 20 steps).
//
// run_layout trains `steps` steps through the layout's train step (the pipeline's with pp > 1,
// else the data-parallel one, or with `device` the device step's) and the ZeRO engine, and a
// one-process model alongside on the same tokens, the step's dp x M microbatches in the same order
// (grad-accum = dp x M): per step, the loss and the gradient norm to `tol` relative, the expert
// load to one moved assignment (fp32); after the last step, each rank's units against the
// reference's (the updates' L2 difference over the L2 of the reference's update, 3e-4, as in
// test_tensor.cpp); with a tied head under pp, the embedding's two replicas (first and last stage)
// bitwise equal; the forward-only evaluation equal to the reference's.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "mpi_test.h"
#include "optim/clip.h"
#include "optim/lr_schedule.h"
#include "parallel/expert/expert_parallel.h"
#include "parallel/pipeline/pipeline_step.h"
#include "parallel/tensor/tensor_parallel.h"
#include "parallel/zero/engine.h"
#include "runtime/error.h"
#include "tests/model_run.h"
#include "tests/mpi/small_moe.h"

namespace zt::test {

struct LayoutCase {
  int pp = 1, tp = 1, stage = 0;
  PipeScheduleKind kind = PipeScheduleKind::one_f_one_b;
  int V = 1, layers = 4, M = 4;
  bool untie = false;
  DType precision = DType::fp32;
  double tol = 1e-5;
  int ep = 1, experts = 3;
  double capacity = 0;  // the capacity factor (0: dropless)
  bool device = false;  // the device step's passes, run on the CPU (model/device/)
};

inline std::string describe(const LayoutCase& k, int dp) {
  return cat("pp ", k.pp, " dp ", dp, " tp ", k.tp, " ep ", k.ep, " ",
             k.pp > 1 ? pipe_schedule_name(k.kind) : "", k.V > 1 ? cat(" V ", k.V) : std::string(),
             " stage ", k.stage, " ", dtype_name(k.precision), k.untie ? " untied" : "",
             k.device ? " device passes" : "", " layers ", k.layers, " experts ", k.experts,
             " capacity ", k.capacity);
}

inline void run_layout(const LayoutCase& k) {
  ProcessGrid grid(world(), k.tp, k.pp, k.ep);
  const int dp = grid.dp().size(), rdp = grid.dp().rank(), st = grid.coord().pp;
  ModelConfig cfg = small_moe_config(k.layers);
  cfg.untie_embeddings = k.untie;
  cfg.experts = k.experts;
  cfg.capacity_factor = k.capacity;
  const int B = 2, T = cfg.seq_len, M = k.M, steps = 20;
  const int64_t G = (int64_t)B * M * dp;  // samples per step
  const std::string what = describe(k, dp);
  AdamWConfig ac;
  ac.weight_decay = 0.1f;

  Model ref(cfg, 42);  // one process, grad-accum = dp x M
  ModelRun ref_run(ref);
  const TensorSlice slice{k.tp, grid.coord().tp};
  const PipelineLayout lay = make_pipeline_layout(cfg, k.pp, k.V);
  const std::vector<bool> owned =
      k.pp > 1 ? stage_units(lay, build_param_table(cfg, slice), cfg, st) : std::vector<bool>{};
  TensorParallel tp_hook(grid.tp());
  ExpertParallel ep_hook(grid.ep());
  Model model(cfg, 42, true, slice, owned, ExpertSlice{k.ep, grid.coord().ep});
  if (k.tp > 1) model.tp = &tp_hook;
  if (k.ep > 1) model.ep = &ep_hook;
  ZeroOptions zo;
  zo.stage = k.stage, zo.precision = k.precision;
  ZeroEngine engine(model, grid, zo);
  std::unique_ptr<TrainStep> ts = k.pp > 1 ? make_pipeline_step(model, engine, grid, lay, k.kind)
                                  : k.device
                                      ? make_device_step(model, engine, grid, DeviceKind::cpu)
                                      : make_data_parallel_step(model, engine, grid);
  if (k.pp > 1) {
    EXPECT_STREQ(ts->schedule_name(), pipe_schedule_name(k.kind));
  }

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
    std::vector<int64_t> ref_load(load_size(cfg), 0);
    for (int q = 0; q < dp; ++q)
      for (int i = 0; i < M; ++i) {  // dp rank q's microbatch i
        const LossParts lp = ref_run.forward(fill(s * G + (int64_t)(q * M + i) * B), B, T);
        ref_loss += lp.loss() / (dp * M);
        add_load(ref_load, lp.load);
        ref_run.backward(1.0f / (float)(dp * M));
      }
    const double ref_norm = ref_opt.step(lr, 0.5, ac, s + 1);
    const StepLosses sl = ts->run(
        M, [&](int i) { return fill(s * G + (int64_t)(rdp * M + i) * B); }, B, T);
    const StepStats stats = engine.finish_step(lr, 0.5, ac, s + 1);
    EXPECT_LT(rel_diff(sl.ce + sl.aux, ref_loss), k.tol) << what << " step " << s;
    EXPECT_LT(rel_diff(stats.grad_norm, ref_norm), k.tol) << what << " step " << s;
    // The load: the same assignments in all; fp32, per expert (a near-tie in a router's top-k can
    // go the other way under another reduction order: one assignment moves).
    int64_t moved = 0, total = 0, ref_total = 0;
    ASSERT_EQ(sl.load.size(), ref_load.size()) << what;
    for (size_t e = 0; e < ref_load.size(); ++e) {
      moved += std::abs(sl.load[e] - ref_load[e]);
      total += sl.load[e], ref_total += ref_load[e];
    }
    EXPECT_EQ(total, ref_total) << what << " step " << s;
    if (k.precision == DType::fp32) {
      EXPECT_LE(moved, 2) << what << " step " << s;
    }
    EXPECT_GE(ts->wait_ms(), 0.0);
  }

  // Evaluation: forward only, the same loss on every rank.
  const LossParts ev = ts->evaluate(fill(999), B, T);
  ts->end_evaluation();
  const LossParts ev_ref = ref_run.forward(fill(999), B, T);
  EXPECT_LT(rel_diff(ev.ce, ev_ref.ce), k.tol) << what << ": evaluation";

  // Each rank's units against the reference (every rank of a unit's group takes part).
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

}  // namespace zt::test
