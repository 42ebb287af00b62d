// The model against PyTorch: tests/reference/tiny_moe.h5 holds float64 results of SPEC
// section 1 for three cases (dropless; capacity 1.0; untied head without router renormalisation).
// We load its fp32 weights, run our fp32 forward/backward and one AdamW step, and compare.
// Tolerances (fp32 against float64, 32 tokens, d = 32): residual stream, logits and losses to a
// normalised error of 2e-6; every gradient to 2e-5 of its own scale. The AdamW step is fed the
// reference gradients (rounded to fp32): Adam's first step is lr * g / (|g| + eps), whose
// sensitivity to g near 0 is lr / eps = 1e5, so our own gradients' fp32 rounding would dominate;
// given the same gradients the updated parameters must agree to 1e-7 absolute (lr = 1e-3).
#include <gtest/gtest.h>

#include <set>

#include "grad_check.h"
#include "offload/hdf5.h"
#include "optim/adamw.h"
#include "tests/model_run.h"

namespace zt {
namespace {

const std::string kRef = std::string(ZT_REFERENCE_DIR) + "/tiny_moe.h5";

ModelConfig read_config(hid_t f, const std::string& g) {
  ModelConfig c;
  auto i = [&](const char* k) { return (int)h5_read_attr_i64(f, g, k); };
  c.vocab = i("vocab");
  c.layers = i("layers");
  c.model_dim = i("model_dim");
  c.heads = i("heads");
  c.ffn_dim = i("ffn_dim");
  c.experts = i("experts");
  c.top_k = i("top_k");
  c.shared_experts = i("shared_experts");
  c.dense_layers = i("dense_layers");
  c.expert_ffn_dim = i("expert_ffn_dim");
  c.capacity_factor = h5_read_attr_f64(f, g, "capacity_factor");
  c.aux_loss_coef = h5_read_attr_f64(f, g, "aux_loss_coef");
  c.router_norm = i("router_norm") != 0;
  c.rope_base = h5_read_attr_f64(f, g, "rope_base");
  c.seq_len = i("seq_len");
  c.untie_embeddings = i("untie_embeddings") != 0;
  return c;
}

class ReferenceModel : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceModel, MatchesPyTorch) {
  const std::string g = "/" + GetParam();
  H5File f = H5File::open(kRef);
  ModelConfig cfg = read_config(f, g);
  Model model(cfg, /*seed=*/0);
  test::ModelRun run(model);

  // Same parameter set, by SPEC name.
  std::vector<std::string> names = h5_list(f, g + "/params");
  std::set<std::string> ours;
  for (const ParamSpec& p : model.table.params) ours.insert(p.name);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), ours);
  for (const ParamSpec& p : model.table.params) {
    EXPECT_EQ(h5_shape(f, g + "/params/" + p.name), p.shape) << p.name;
    std::vector<float> w = h5_read_f32(f, g + "/params/" + p.name);
    std::copy(w.begin(), w.end(), model.param(p.name));
  }

  std::vector<int64_t> tok64 = h5_read_i64(f, g + "/tokens");
  std::vector<int64_t> tshape = h5_shape(f, g + "/tokens");
  const int B = (int)tshape[0], T = (int)tshape[1] - 1;
  std::vector<int32_t> tokens(tok64.begin(), tok64.end());

  model.zero_grads();
  LossParts lp = run.forward(tokens.data(), B, T);
  const int64_t Nd = (int64_t)B * T * cfg.model_dim;
  for (int i = 0; i <= cfg.layers; ++i) {
    std::vector<double> h = h5_read_f64(f, g + "/hidden/" + std::to_string(i));
    EXPECT_LT(test::max_norm_err(run.hidden(i), h.data(), Nd), 2e-6) << "hidden " << i;
  }
  std::vector<double> logits = h5_read_f64(f, g + "/logits");
  EXPECT_LT(test::max_norm_err(run.logits(), logits.data(), logits.size()), 2e-6);
  double ce = h5_read_f64(f, g + "/ce")[0], aux = h5_read_f64(f, g + "/aux_loss")[0];
  double loss = h5_read_f64(f, g + "/loss")[0];
  EXPECT_NEAR(lp.ce, ce, 2e-6 * ce);
  EXPECT_NEAR(lp.aux, aux, 2e-6 * std::max(aux, 1e-3));
  EXPECT_NEAR(lp.loss(), loss, 2e-6 * loss);

  run.backward(1.0f);
  for (const ParamSpec& p : model.table.params) {
    std::vector<double> gr = h5_read_f64(f, g + "/grads/" + p.name);
    EXPECT_LT(test::max_norm_err(model.grad(p.name), gr.data(), gr.size()), 2e-5) << p.name;
  }

  AdamWConfig ac;
  ac.beta1 = (float)h5_read_attr_f64(f, "/", "adamw_beta1");
  ac.beta2 = (float)h5_read_attr_f64(f, "/", "adamw_beta2");
  ac.eps = (float)h5_read_attr_f64(f, "/", "adamw_eps");
  ac.weight_decay = (float)h5_read_attr_f64(f, "/", "adamw_weight_decay");
  float lr = (float)h5_read_attr_f64(f, "/", "adamw_lr");
  for (const ParamSpec& p : model.table.params) {
    std::vector<float> m(p.numel), v(p.numel);
    std::vector<float> gr = h5_read_f32(f, g + "/grads/" + p.name);
    adamw_step(model.param(p.name), m.data(), v.data(), gr.data(), p.numel, 1, lr, ac, p.decay);
    std::vector<double> want = h5_read_f64(f, g + "/adamw_step1/" + p.name);
    double worst = 0;
    for (int64_t i = 0; i < p.numel; ++i)
      worst = std::max(worst, std::fabs(model.param(p.name)[i] - want[i]));
    EXPECT_LT(worst, 1e-7) << p.name;
  }
}

INSTANTIATE_TEST_SUITE_P(TinyMoe, ReferenceModel,
                         ::testing::Values("dropless", "capacity", "untied_no_renorm"));

}  // namespace
}  // namespace zt
