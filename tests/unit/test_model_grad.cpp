// Whole-model gradient check: a tiny MoE config with shared experts and capacity dropping on.
// The fp32 model's analytic gradient, projected on random directions (one per unit, so a wrong
// block cannot hide behind a right one), against central differences of the loss. We require 2e-3
// relative agreement (at least 2e-5 absolute) plus the difference quotient's own fp32 noise: the
// forward's rounding is ~1e-7 of the loss per evaluation, so with step h = 1e-2 along a unit-norm
// direction the quotient carries up to 2 * 1e-7 * |L| / (2h), ~4e-5 here. A wrong gradient is off
// by its own size (~1e-2), far above both.
#include <gtest/gtest.h>

#include <cmath>

#include "grad_check.h"
#include "tests/model_run.h"

namespace zt {
namespace {

ModelConfig tiny_config() {
  ModelConfig c;
  c.vocab = 41;
  c.layers = 3;
  c.model_dim = 24;
  c.heads = 3;
  c.ffn_dim = 20;
  c.experts = 5;
  c.top_k = 2;
  c.shared_experts = 1;
  c.dense_layers = 1;
  c.expert_ffn_dim = 12;
  c.capacity_factor = 0.8;  // drops assignments
  c.aux_loss_coef = 0.05;
  c.seq_len = 7;
  return c;
}

TEST(ModelGrad, DirectionalDerivativesMatchFiniteDifferences) {
  ModelConfig cfg = tiny_config();
  Model model(cfg, 3);
  test::ModelRun run(model);
  // Larger weights than the SPEC init so every part of the loss has a visible gradient.
  for (const ParamSpec& p : model.table.params) {
    float* w = model.param(p.name);
    auto r = test::random_vec(p.numel, zt::hash_name(p.name), p.is_norm ? 0.1 : 0.3, p.is_norm);
    for (int64_t i = 0; i < p.numel; ++i) w[i] = (float)r[i];
  }
  const int B = 3, T = cfg.seq_len;
  std::vector<int32_t> tok(B * (T + 1));
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = (int32_t)((i * 17 + 5) % cfg.vocab);

  model.zero_grads();
  LossParts lp = run.forward(tok.data(), B, T);
  EXPECT_GT(lp.dropped, 0) << "capacity dropping must be exercised";
  EXPECT_GT(lp.aux, 0);
  run.backward(1.0f);

  for (int u = 0; u < model.table.num_units(); ++u) {
    const int64_t n = model.table.unit_numel(u);
    auto dir = test::random_vec(n, 100 + u);
    double nrm = std::sqrt(test::dot(dir, dir));
    for (double& x : dir) x /= nrm;
    double analytic = 0;
    for (int64_t i = 0; i < n; ++i) analytic += model.unit_grads[u][i] * dir[i];

    std::vector<float> saved(model.unit_params[u], model.unit_params[u] + n);
    const double h = 1e-2;
    auto loss_at = [&](double s) {
      for (int64_t i = 0; i < n; ++i) model.unit_params[u][i] = saved[i] + (float)(s * dir[i]);
      return run.forward(tok.data(), B, T).loss();
    };
    double numeric = (loss_at(h) - loss_at(-h)) / (2 * h);
    std::copy(saved.begin(), saved.end(), model.unit_params[u]);
    const double noise = 2 * 1e-7 * std::fabs(lp.loss()) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 2e-3 * std::max(std::fabs(numeric), 1e-2) + noise)
        << "unit " << u;
  }
}

TEST(ModelGrad, GradientsAccumulateAcrossMicrobatches) {
  ModelConfig cfg = tiny_config();
  Model model(cfg, 5);
  test::ModelRun run(model);
  const int B = 2, T = cfg.seq_len;
  std::vector<int32_t> tok(B * (T + 1));
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = (int32_t)((i * 7 + 3) % cfg.vocab);
  model.zero_grads();
  run.forward(tok.data(), B, T);
  run.backward(1.0f);
  std::vector<float> once(model.unit_grads[1], model.unit_grads[1] + model.table.unit_numel(1));
  run.forward(tok.data(), B, T);
  run.backward(1.0f);
  for (size_t i = 0; i < once.size(); ++i) ASSERT_NEAR(model.unit_grads[1][i], 2 * once[i], 1e-6);
}

TEST(ModelGrad, InitDependsOnlyOnSeedAndName) {
  ModelConfig cfg = tiny_config();
  Model a(cfg, 9), b(cfg, 9), c(cfg, 10);
  const float* wa = a.param("blocks.2.moe.experts.4.w2");
  EXPECT_EQ(wa[5], b.param("blocks.2.moe.experts.4.w2")[5]);
  EXPECT_NE(wa[5], c.param("blocks.2.moe.experts.4.w2")[5]);
  EXPECT_EQ(a.param("final_norm")[0], 1.0f);
  // std of Wo-type matrices is 0.02 / sqrt(2 * layers)
  const ParamSpec& wo = a.table.at("blocks.0.attn.wo");
  EXPECT_FLOAT_EQ(wo.init_std, 0.02f / std::sqrt(6.0f));
  EXPECT_FALSE(a.table.at("blocks.0.ffn_norm").decay);
  // The table's count against the closed form of SPEC section 1.
  const int64_t d = cfg.model_dim, sw = 3 * d;
  int64_t closed = (int64_t)cfg.vocab * d + d;
  for (int l = 0; l < cfg.layers; ++l)
    closed += 2 * d + 4 * d * d +
              (cfg.is_moe(l) ? d * cfg.experts + cfg.experts * sw * cfg.expert_ffn_dim +
                                   sw * cfg.shared_experts * cfg.expert_ffn_dim
                             : sw * cfg.ffn_dim);
  EXPECT_EQ(a.table.total_numel(), closed);
  EXPECT_EQ(count_params(a.table, cfg).params, closed);
}

}  // namespace
}  // namespace zt
