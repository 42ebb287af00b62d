// KV-cache decoding must give the same logits as the full-sequence forward at every position
// (fp32, different summation order: normalised error below 1e-5), tied and untied heads.
#include <gtest/gtest.h>

#include "grad_check.h"
#include "model/generate.h"
#include "tests/model_run.h"

namespace zt {
namespace {

void check_decoder_matches_forward(bool untie) {
  ModelConfig c;
  c.vocab = 256, c.layers = 3, c.model_dim = 32, c.heads = 4, c.ffn_dim = 40, c.experts = 4;
  c.top_k = 2, c.shared_experts = 1, c.dense_layers = 1, c.expert_ffn_dim = 16, c.seq_len = 12;
  c.untie_embeddings = untie;
  Model model(c, 11, /*with_grads=*/false);
  for (const ParamSpec& p : model.table.params) {  // weights large enough to route decisively
    auto r = test::random_vec(p.numel, hash_name(p.name), p.is_norm ? 0.1 : 0.25, p.is_norm);
    std::copy(r.begin(), r.end(), model.param(p.name));
  }
  const int T = c.seq_len;
  std::vector<int32_t> tok(T + 1);
  for (int i = 0; i <= T; ++i) tok[i] = (i * 37 + 11) % 256;
  test::ModelRun run(model);
  run.forward(tok.data(), 1, T);
  std::vector<float> full(run.logits(), run.logits() + (size_t)T * c.vocab);

  Decoder dec(model);
  for (int t = 0; t < T; ++t) {
    const std::vector<float>& lg = dec.step(tok[t]);
    EXPECT_LT(test::max_norm_err(lg.data(), full.data() + (size_t)t * c.vocab, c.vocab), 1e-5)
        << "position " << t;
  }
}

TEST(Generate, DecoderMatchesForwardTied) { check_decoder_matches_forward(false); }
TEST(Generate, DecoderMatchesForwardUntied) { check_decoder_matches_forward(true); }

TEST(Generate, GreedyIsDeterministicAndSlidesPastContext) {
  ModelConfig c;
  c.layers = 2, c.model_dim = 16, c.heads = 2, c.ffn_dim = 16, c.experts = 2, c.top_k = 1;
  c.expert_ffn_dim = 8, c.seq_len = 8;
  Model model(c, 1, false);
  SampleOptions o;
  o.max_new_tokens = 20;  // more than seq_len: the cache is rebuilt on the way
  o.temperature = 0;
  std::vector<int32_t> a = generate(model, {65, 66, 67}, o), b = generate(model, {65, 66, 67}, o);
  EXPECT_EQ(a.size(), 20u);
  EXPECT_EQ(a, b);
  o.temperature = 1.0f, o.top_k = 5;
  EXPECT_EQ(generate(model, {65}, o), generate(model, {65}, o));  // seeded sampling
}

}  // namespace
}  // namespace zt
