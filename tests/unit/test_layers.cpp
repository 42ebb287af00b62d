// The layer-level model API (model/layers.h) as a schedule uses it:
//  - the weight half of backward kept and run later (in another order) gives the same bits as
//    running it at once (with QAT too);
//  - activations belong to the caller: two microbatches in flight in two Acts, forward both, then
//    backward both, give each microbatch's own loss and the sum of their gradients;
//  - the tensor-parallel hook is called at every sum of the Megatron layout (four per block, the
//    MoE gates' gradient, the embedding and the head), and a hook that leaves the partial sums as
//    they are (one rank) changes nothing beyond fp32 rounding.
#include <gtest/gtest.h>

#include <map>

#include "model/passes.h"
#include "model/tp_hook.h"
#include "tests/model_run.h"
#include "tests/unit/grad_check.h"

namespace zt {
namespace {

ModelConfig layers_config(bool untie) {
  ModelConfig c;
  c.vocab = 29, c.layers = 3, c.model_dim = 16, c.heads = 2, c.ffn_dim = 20, c.experts = 4;
  c.top_k = 2, c.shared_experts = 1, c.dense_layers = 1, c.expert_ffn_dim = 8, c.seq_len = 6;
  c.capacity_factor = 1.0, c.untie_embeddings = untie;
  return c;
}

std::vector<int32_t> tokens(int B, int T, int V, int salt) {
  std::vector<int32_t> t((size_t)B * (T + 1));
  for (size_t i = 0; i < t.size(); ++i) t[i] = (int32_t)((i * 13 + salt * 7 + 3) % V);
  return t;
}

std::vector<float> all_grads(Model& m) {
  std::vector<float> g;
  for (int u = 0; u < m.table.num_units(); ++u)
    g.insert(g.end(), m.unit_grads[u], m.unit_grads[u] + m.table.unit_numel(u));
  return g;
}

TEST(Layers, DeferredWeightPassGivesTheSameBits) {
  // Tied, untied, and with QAT on (the deferred products run LSQ too: model/qat.h).
  for (int variant : {0, 1, 2}) {
    ModelConfig c = layers_config(variant == 1);
    if (variant == 2) c.qat.bits = QatBits::int4, c.qat.group_size = 4;
    const int B = 2, T = c.seq_len;
    const std::vector<int32_t> tok = tokens(B, T, c.vocab, 1);
    Model now(c, 5), later(c, 5);
    now.qat.active = later.qat.active = c.qat.on();
    test::ModelRun run(now);
    now.zero_grads();
    run.forward(tok.data(), B, T);
    run.backward(0.5f);

    later.zero_grads();
    Acts a;
    GradScratch s;
    model_forward(later, a, tok.data(), B, T);
    head_backward(later, a, s, 0.5f, /*defer_weights=*/true);
    for (int l = c.layers - 1; l >= 0; --l) block_backward(later, l, a, s, 0.5f, true);
    embed_backward(later, a);
    for (int l = 0; l < c.layers; ++l) block_backward_weight(later, l, a);  // other order
    head_backward_weight(later, a);
    EXPECT_EQ(all_grads(later), all_grads(now)) << variant;
  }
}

TEST(Layers, TwoMicrobatchesInFlightKeepTheirOwnActivations) {
  ModelConfig c = layers_config(false);
  const int B = 2, T = c.seq_len;
  const std::vector<int32_t> t0 = tokens(B, T, c.vocab, 2), t1 = tokens(B, T, c.vocab, 3);
  Model one(c, 9), two(c, 9);
  test::ModelRun run(one);  // one after the other
  one.zero_grads();
  const double l0 = run.forward(t0.data(), B, T).loss();
  run.backward(1.0f);
  const double l1 = run.forward(t1.data(), B, T).loss();
  run.backward(1.0f);

  two.zero_grads();  // both forwards first, then both backwards, in reverse
  Acts a0, a1;
  GradScratch s;
  EXPECT_EQ(model_forward(two, a0, t0.data(), B, T).loss(), l0);
  EXPECT_EQ(model_forward(two, a1, t1.data(), B, T).loss(), l1);
  model_backward(two, a1, s, 1.0f);
  model_backward(two, a0, s, 1.0f);
  const std::vector<float> g1 = all_grads(one), g2 = all_grads(two);
  EXPECT_LT(test::max_norm_err(g2, g1), 1e-6);  // the same two sums, added in the other order
}

// Records the calls; leaves x as it is (one rank's partial sum is the whole sum).
struct RecordingHook : TensorParallelHook {
  std::map<std::pair<int, int>, int> calls;  // (point, layer) -> count
  TpWait sum_partial(TpPoint where, int layer, float*, int64_t) override {
    ++calls[{(int)where, layer}];
    return {};
  }
  void gather(const float* mine, int64_t n, float* all) override { std::copy(mine, mine + n, all); }
  TpWait gather_rows(TpPoint, int, const float*, int64_t, float*) override {
    ADD_FAILURE() << "no sequence parallelism here";
    return {};
  }
  TpWait sum_rows(TpPoint, int, const float*, float*, int64_t) override {
    ADD_FAILURE() << "no sequence parallelism here";
    return {};
  }
};

TEST(Layers, TensorParallelHookSeesEverySumOfTheLayout) {
  ModelConfig c = layers_config(false);
  const int B = 2, T = c.seq_len;
  const std::vector<int32_t> tok = tokens(B, T, c.vocab, 4);
  Model plain(c, 3), hooked(c, 3);
  RecordingHook hook;
  hooked.tp = &hook;
  test::ModelRun rp(plain), rh(hooked);
  plain.zero_grads();
  hooked.zero_grads();
  const double lp = rp.forward(tok.data(), B, T).loss();
  const double lh = rh.forward(tok.data(), B, T).loss();
  rp.backward(1.0f);
  rh.backward(1.0f);
  EXPECT_NEAR(lh, lp, 1e-6 * lp);
  EXPECT_LT(test::max_norm_err(all_grads(hooked), all_grads(plain)), 1e-5);
  for (int l = 0; l < c.layers; ++l) {
    for (TpPoint p :
         {TpPoint::attn_out, TpPoint::ffn_out, TpPoint::attn_dinput, TpPoint::ffn_dinput})
      EXPECT_EQ((hook.calls[{(int)p, l}]), 1) << tp_point_name(p) << " block " << l;
    EXPECT_EQ((hook.calls[{(int)TpPoint::moe_dgates, l}]), c.is_moe(l) ? 1 : 0) << "block " << l;
  }
  EXPECT_EQ((hook.calls[{(int)TpPoint::embed_out, -1}]), 1);
  EXPECT_EQ((hook.calls[{(int)TpPoint::head_dinput, -1}]), 1);
  int points = 0;  // and no sum anywhere else
  for (const auto& [point, n] : hook.calls) points += n > 0;
  EXPECT_EQ(points, 4 * c.layers + (c.layers - c.dense_layers) + 2);
}

}  // namespace
}  // namespace zt
