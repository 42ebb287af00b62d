// ZeroEngine::checkpoint_pieces: every rank's even piece of every parameter (fp32 master and both
// moments), redistributed from the shards with all_to_all, must equal the same pieces cut from
// the fully gathered state, bitwise, for stages 0-3, fp32 and bf16, large and tiny buckets, and
// with the state in an NVMe shard store.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "mpi_test.h"
#include "offload/shard_store.h"
#include "parallel/step/train_step.h"
#include "parallel/zero/engine.h"
#include "runtime/error.h"
#include "runtime/split.h"
#include "tests/mpi/engine_state.h"

namespace zt::test {
namespace {

void check_pieces(int stage, DType precision, double bucket_mb, bool offload) {
  Communicator& dp = world();
  const int n = dp.size(), r = dp.rank();
  ModelConfig cfg;
  cfg.vocab = 61;
  cfg.layers = 2;
  cfg.model_dim = 20;
  cfg.heads = 2;
  cfg.ffn_dim = 27;
  cfg.experts = 3;
  cfg.top_k = 2;
  cfg.shared_experts = 1;
  cfg.expert_ffn_dim = 13;
  cfg.seq_len = 7;
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / cat("zt-pieces-", getpid());
  std::unique_ptr<ShardStore> store;
  if (offload) store = std::make_unique<ShardStore>(dir.string(), r);
  {
    Model model(cfg, 3);
    ZeroOptions zo;
    zo.stage = stage, zo.precision = precision, zo.bucket_mb = bucket_mb;
    zo.store = store.get();
    zo.optim_in_store = offload;
    zo.params_in_store = offload && stage == 3;
    ZeroEngine engine(model, dp_grid(), zo);
    std::unique_ptr<TrainStep> ts = make_data_parallel_step(model, engine, dp_grid());
    std::vector<int32_t> tok(2 * (cfg.seq_len + 1));
    for (int s = 0; s < 2; ++s) {  // moments that are not zero
      for (size_t i = 0; i < tok.size(); ++i) tok[i] = (int32_t)((i * 7 + r * 3 + s) % cfg.vocab);
      ts->run(
          1, [&](int) { return tok.data(); }, 2, cfg.seq_len);
      engine.finish_step(1e-2, 1.0, AdamWConfig{}, s + 1);
    }
    std::vector<std::vector<float>> full_p, full_m, full_v;
    gather_full_state(engine, model, full_p, &full_m, &full_v);
    const std::string what = cat("stage ", stage, " ", dtype_name(precision), " bucket ", bucket_mb,
                                 offload ? " offloaded" : "");
    for (int u = 0; u < model.table.num_units(); ++u) {
      std::vector<float> p, m, v, ep, em, ev;
      engine.checkpoint_pieces(u, p, m, v);
      for (const ParamSpec& t : model.table.params) {
        if (t.unit != u) continue;
        const auto [off, len] = even_piece(t.numel, n, r);
        for (auto [dst, src] :
             {std::pair{&ep, &full_p}, std::pair{&em, &full_m}, std::pair{&ev, &full_v}})
          dst->insert(dst->end(), (*src)[u].begin() + t.offset + off,
                      (*src)[u].begin() + t.offset + off + len);
      }
      EXPECT_EQ(p, ep) << what << " unit " << u;
      EXPECT_EQ(m, em) << what << " unit " << u;
      EXPECT_EQ(v, ev) << what << " unit " << u;
    }
  }
  store.reset();
  std::filesystem::remove_all(dir);
}

TEST(ZeroCheckpointPieces, EqualThePiecesOfTheGatheredState) {
  for (int stage = 0; stage <= 3; ++stage)
    for (DType dt : {DType::fp32, DType::bf16})
      for (double bucket : {25.0, 0.0005}) check_pieces(stage, dt, bucket, false);
  check_pieces(3, DType::fp32, 0.0005, true);
  check_pieces(1, DType::bf16, 25, true);
}

}  // namespace
}  // namespace zt::test
