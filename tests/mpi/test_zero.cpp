// ZeRO equivalence (the nanotron / torchtitan pattern): on every rank, a plain single-process
// model trains the whole global batch with grad-accum = dp; the ZeRO engine trains this rank's
// slice. For 20 steps the losses after every step, and at the end every parameter, must agree:
// relative difference at most 1e-5 (fp32; the two differ only in the order gradients are summed).
// Cases: stages 0-3, overlap on and off, prefetch 0 and 2, tiny buckets, unit sizes that dp does
// not divide, gradient accumulation on top of dp.
#include <gtest/gtest.h>

#include <cmath>

#include "mpi_test.h"
#include "optim/clip.h"
#include "optim/lr_schedule.h"
#include "parallel/step/train_step.h"
#include "parallel/zero/engine.h"
#include "tests/model_run.h"
#include "tests/mpi/engine_state.h"

namespace zt::test {
namespace {

ModelConfig zero_config() {
  ModelConfig c;
  c.vocab = 53;  // odd sizes: units dp does not divide
  c.layers = 3;
  c.model_dim = 20;
  c.heads = 2;
  c.ffn_dim = 27;
  c.experts = 3;
  c.top_k = 2;
  c.shared_experts = 1;
  c.dense_layers = 1;
  c.expert_ffn_dim = 13;
  c.capacity_factor = 1.5;
  c.seq_len = 9;
  return c;
}

struct Case {
  int stage;
  bool overlap = true;
  int prefetch = 1;
  double bucket_mb = 25;
  int accum = 1;
  bool untie = false;
  DType precision = DType::fp32;
  double tol = 1e-5;  // relative, on losses, gradient norms and final parameters
};

// Tokens of global sample j (deterministic, any rank can make any sample).
void sample(int64_t j, int T, int V, int32_t* out) {
  for (int t = 0; t <= T; ++t) out[t] = (int32_t)((j * 31 + t * 7 + (j * t) % 5) % V);
}

void run_case(const Case& k) {
  Communicator& dp = world();
  const int n = dp.size(), r = dp.rank();
  ModelConfig cfg = zero_config();
  cfg.untie_embeddings = k.untie;
  const int B = 2, T = cfg.seq_len, steps = 20;
  const int64_t G = (int64_t)B * k.accum * n;
  AdamWConfig ac;
  ac.weight_decay = 0.1f;

  Model ref(cfg, 42);  // single process, grad-accum = accum * dp
  ModelRun ref_run(ref);
  Model model(cfg, 42);
  ZeroOptions zo;
  zo.stage = k.stage, zo.overlap = k.overlap, zo.prefetch = k.prefetch, zo.bucket_mb = k.bucket_mb;
  zo.precision = k.precision;
  ZeroEngine engine(model, dp_grid(), zo);
  std::unique_ptr<TrainStep> ts = make_data_parallel_step(model, engine, dp_grid());

  std::vector<float> mref_buf, vref_buf;
  std::vector<std::vector<float>> mref(ref.table.num_units()), vref(ref.table.num_units());
  for (int u = 0; u < ref.table.num_units(); ++u) {
    mref[u].assign(ref.table.unit_numel(u), 0.0f);
    vref[u].assign(ref.table.unit_numel(u), 0.0f);
  }
  std::vector<int32_t> tok((size_t)B * (T + 1));
  for (int s = 0; s < steps; ++s) {
    const double lr = lr_at(s, 3e-3, 3e-4, 2, steps);
    // Reference: every microbatch of the global batch, in rank-major order.
    ref.zero_grads();
    double ref_loss = 0;
    for (int q = 0; q < n * k.accum; ++q) {
      for (int b = 0; b < B; ++b)
        sample(s * G + (int64_t)q * B + b, T, cfg.vocab, &tok[b * (T + 1)]);
      ref_loss += ref_run.forward(tok.data(), B, T).loss() / (n * k.accum);
      ref_run.backward(1.0f / (float)(n * k.accum));
    }
    double sq = 0;
    for (int u = 0; u < ref.table.num_units(); ++u)
      sq += global_norm_sq(ref.unit_grads[u], ref.table.unit_numel(u));
    const float scale = clip_scale(std::sqrt(sq), 0.5);  // clipping active
    for (const ParamSpec& p : ref.table.params) {
      float* g = ref.grad(p.name);
      for (int64_t i = 0; i < p.numel; ++i) g[i] *= scale;
      adamw_step(ref.param(p.name), mref[p.unit].data() + p.offset, vref[p.unit].data() + p.offset,
                 g, p.numel, s + 1, (float)lr, ac, p.decay);
    }
    // ZeRO: this rank's microbatches.
    auto microbatch = [&](int m) {
      const int64_t first = s * G + ((int64_t)r * k.accum + m) * B;
      for (int b = 0; b < B; ++b) sample(first + b, T, cfg.vocab, &tok[b * (T + 1)]);
      return tok.data();
    };
    const StepLosses sl = ts->run(k.accum, microbatch, B, T);  // means over the global batch
    const double loss = sl.ce + sl.aux;
    StepStats st = engine.finish_step(lr, 0.5, ac, s + 1);
    EXPECT_FALSE(st.skipped);
    EXPECT_NEAR(loss, ref_loss, k.tol * ref_loss) << "step " << s;
    EXPECT_NEAR(st.grad_norm, std::sqrt(sq), k.tol * std::sqrt(sq)) << "step " << s;
  }
  // Final parameters, fp32 only: in 16 bits, Adam's first steps move each weight by about lr
  // whatever the gradient's size, so an element whose small gradient changes sign under 16-bit
  // rounding ends up 2 lr away; the per-step losses and gradient norms above are the measure.
  if (k.precision != DType::fp32) return;
  std::vector<std::vector<float>> params, m, v;
  gather_full_state(engine, model, params, &m, &v);
  for (const ParamSpec& p : ref.table.params) {
    double worst = 0, scale = 1e-3;
    for (int64_t i = 0; i < p.numel; ++i) {
      scale = std::max(scale, (double)std::fabs(ref.param(p.name)[i]));
      worst =
          std::max(worst, (double)std::fabs(params[p.unit][p.offset + i] - ref.param(p.name)[i]));
    }
    EXPECT_LE(worst / scale, k.tol) << p.name;
  }
}

TEST(ZeroEquivalence, Stage0) { run_case({0}); }
TEST(ZeroEquivalence, Stage1) { run_case({1}); }
TEST(ZeroEquivalence, Stage2) { run_case({2}); }
TEST(ZeroEquivalence, Stage3) { run_case({3}); }
TEST(ZeroEquivalence, Stage3OverlapOff) { run_case({3, false}); }
TEST(ZeroEquivalence, Stage2OverlapOff) { run_case({2, false}); }
TEST(ZeroEquivalence, Stage3Prefetch0) { run_case({3, true, 0}); }
TEST(ZeroEquivalence, Stage3Prefetch2) { run_case({3, true, 2}); }
TEST(ZeroEquivalence, TinyBuckets) {  // 64-element chunks: many collectives per unit
  for (int st : {0, 1, 2, 3}) run_case({st, true, 1, 64.0 * 4 / (1 << 20)});
}
TEST(ZeroEquivalence, GradAccumOnTopOfDp) {
  for (int st : {0, 1, 2, 3}) run_case({st, true, 1, 25, 2});
}
TEST(ZeroEquivalence, UntiedHead) {
  for (int st : {0, 3}) run_case({st, true, 1, 25, 1, true});
}

// Mixed precision against the fp32 reference. bf16 keeps 8 significant bits: parameters round to
// 2^-9 relative, every 16-bit gradient reduction rounds once per ring hop, so over 20 AdamW steps
// (each moving a weight by ~lr = 3e-3) losses and the gradient norm agree to ~1%; we allow 3%
// for bf16 and 1% for fp16 (11 bits).
TEST(ZeroMixedPrecision, Bf16AllStages) {
  for (int st : {0, 1, 2, 3}) run_case({st, true, 1, 25, 2, false, DType::bf16, 3e-2});
}
TEST(ZeroMixedPrecision, Fp16AllStages) {
  for (int st : {0, 1, 2, 3}) run_case({st, true, 1, 25, 1, false, DType::fp16, 1e-2});
}

// fp16 dynamic loss scaling: an injected inf gradient skips exactly that step (parameters and
// moments unchanged) and halves the scale; the next step updates again.
TEST(ZeroMixedPrecision, Fp16OverflowSkipsTheStepAndLowersTheScale) {
  Communicator& dp = world();
  ModelConfig cfg = zero_config();
  for (int st : {0, 3}) {
    Model model(cfg, 3);
    ZeroOptions zo;
    zo.stage = st, zo.precision = DType::fp16;
    ZeroEngine engine(model, dp_grid(), zo);
    std::unique_ptr<TrainStep> ts = make_data_parallel_step(model, engine, dp_grid());
    AdamWConfig ac;
    const int B = 2, T = cfg.seq_len;
    std::vector<int32_t> tok((size_t)B * (T + 1));
    for (int b = 0; b < B; ++b) sample(dp.rank() * B + b, T, cfg.vocab, &tok[b * (T + 1)]);
    auto step = [&](float inject) {
      ts->run(
          1, [&](int) { return tok.data(); }, B, T, inject);
      return engine.finish_step(1e-3, 1.0, ac, 1);
    };
    std::vector<std::vector<float>> p0, p1, p2;
    gather_full_state(engine, model, p0);
    const double scale0 = engine.loss_scale();
    StepStats bad = step(INFINITY);  // every gradient inf / NaN on every rank
    EXPECT_TRUE(bad.skipped);
    EXPECT_EQ(engine.loss_scale(), scale0 / 2);
    EXPECT_EQ(engine.skipped_steps(), 1);
    gather_full_state(engine, model, p1);
    EXPECT_EQ(p0, p1) << "stage " << st << ": a skipped step changed the parameters";
    StepStats good = step(1.0f);
    EXPECT_FALSE(good.skipped);
    EXPECT_EQ(good.loss_scale, scale0 / 2);
    gather_full_state(engine, model, p2);
    EXPECT_NE(p1, p2);
  }
}

// Bytes each rank sends per step (its communication counters) against the ZeRO paper's volumes
// times the ring factor (n-1)/n: 2Ψ for stages 0-2 (all-reduce, or reduce-scatter + all-gather),
// 3Ψ for stage 3 (gather forward, gather backward, reduce-scatter), 4 bytes per element; within
// 5%. (Stage 3 sends a little less: the embedding and final norm stay gathered from forward
// into backward.)
TEST(ZeroAccounting, BytesPerStep) {
  Communicator& dp = world();
  const double n = dp.size();
  if (n == 1) GTEST_SKIP() << "one rank sends nothing";
  ModelConfig cfg = zero_config();
  const double P = (double)count_params(build_param_table(cfg), cfg).params;
  for (int st = 0; st <= 3; ++st) {
    Model model(cfg, 2);
    ZeroOptions zo;
    zo.stage = st;
    ZeroEngine engine(model, dp_grid(), zo);
    std::unique_ptr<TrainStep> ts = make_data_parallel_step(model, engine, dp_grid());
    const int B = 2, T = cfg.seq_len;
    std::vector<int32_t> tok((size_t)B * (T + 1));
    for (int b = 0; b < B; ++b) sample(dp.rank() * B + b, T, cfg.vocab, &tok[b * (T + 1)]);
    CommStats before = comm_stats();
    ts->run(
        1, [&](int) { return tok.data(); }, B, T);
    engine.finish_step(1e-3, 1.0, AdamWConfig{}, 1);
    CommStats d = comm_stats() - before;
    const double sent =
        (double)(d.bytes[(int)CommKind::allgather] + d.bytes[(int)CommKind::reduce_scatter] +
                 d.bytes[(int)CommKind::allreduce]);  // + the 1-float norm
    const double theory = (st < 3 ? 2 : 3) * P * 4 * (n - 1) / n;
    EXPECT_NEAR(sent, theory, 0.05 * theory) << "stage " << st;
  }
}

// Model-state bytes per rank (params + grads + optim, from the allocator's counters) for stages
// 0-3 against theory[stage] bytes, plus at most N - 1 padding elements per unit and buffer, and
// exactly against the engine's plan (plan.h).
void check_model_state_bytes(DType precision, const double (&theory_per_param)[4][2]) {
  Communicator& dp = world();
  const double N = dp.size();
  ModelConfig cfg = zero_config();
  const double P = (double)count_params(build_param_table(cfg), cfg).params;
  for (int st = 0; st <= 3; ++st) {
    MemStats before = mem_stats();
    Model model(cfg, 1);
    ZeroOptions zo;
    zo.stage = st, zo.precision = precision;
    ZeroEngine engine(model, dp_grid(), zo);
    MemStats s = mem_stats();
    auto used = [&](MemCategory c) { return (double)(s.current[(int)c] - before.current[(int)c]); };
    const double got =
        used(MemCategory::params) + used(MemCategory::grads) + used(MemCategory::optim);
    const double theory = theory_per_param[st][0] * P + theory_per_param[st][1] * P / N;
    const double pad = 16.0 * N * model.table.num_units();
    EXPECT_GE(got, theory) << dtype_name(precision) << " stage " << st;
    EXPECT_LE(got, theory + pad) << dtype_name(precision) << " stage " << st;
    // The plan (a pure function, what a planner prices) is exactly what the engine allocated.
    const ZeroBytes plan = plan_zero(model.table, dp_grid().layout(), dp.rank(), zo).bytes;
    EXPECT_EQ(used(MemCategory::params), (double)plan.params) << "stage " << st;
    EXPECT_EQ(used(MemCategory::grads), (double)plan.grads) << "stage " << st;
    EXPECT_EQ(used(MemCategory::optim), (double)plan.optim) << "stage " << st;
  }
}

// bf16 (the ZeRO paper's setting): 16Ψ; 4Ψ + 12Ψ/N; 2Ψ + 14Ψ/N; 16Ψ/N; plus the reduced
// gradient shard stages 1-3 keep (stage 1: 16-bit, 2Ψ/N; stages 2-3: fp32, 4Ψ/N instead of the
// paper's 2Ψ/N). Each row: {bytes per Ψ, bytes per Ψ/N}.
TEST(ZeroAccounting, ModelStateBytesBf16) {
  check_model_state_bytes(DType::bf16, {{16, 0}, {4, 14}, {2, 16}, {0, 18}});
}

// fp32: 16Ψ; 4Ψ + 4Ψ + 4Ψ/N (reduced shard) + 8Ψ/N; 4Ψ + 12Ψ/N; 16Ψ/N.
TEST(ZeroAccounting, ModelStateBytesFp32) {
  check_model_state_bytes(DType::fp32, {{16, 0}, {8, 12}, {4, 12}, {0, 16}});
}

}  // namespace
}  // namespace zt::test
