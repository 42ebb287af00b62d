// Streaming checkpoints: write_rank_file pulls one unit at a time from a source that reuses one
// set of buffers (as the trainer does with ZeroEngine::checkpoint_pieces), and load_checkpoint
// hands units to a sink one at a time. The pages hashed from memory must be those of the unit that
// was current when they were written, so the manifest's checksums verify; every unit comes back
// exactly, in order, once, from files written by 3 "ranks".
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "model/model.h"
#include "offload/checkpoint.h"

namespace zt {
namespace {
namespace fs = std::filesystem;

float value(int which, int u, int64_t i) {  // exact in fp32, however the compiler fuses it
  return (float)(which * 1000 + u) + (float)(i % 4096) * 0.25f;
}

TEST(CheckpointStream, UnitByUnitWriteAndLoadRoundTrip) {
  ModelConfig cfg;
  cfg.layers = 2;
  cfg.model_dim = 64;
  cfg.heads = 4;
  cfg.ffn_dim = 96;
  cfg.experts = 4;
  cfg.expert_ffn_dim = 64;
  cfg.seq_len = 16;
  const ParamTable table = build_param_table(cfg);
  const int U = table.num_units(), world = 3;
  const fs::path dir = fs::temp_directory_path() / ("zt_ckpt_stream_" + std::to_string(getpid()));
  fs::remove_all(dir);
  prepare_checkpoint_dir(dir.string(), 5);
  std::vector<RankFile> files;
  for (int r = 0; r < world; ++r) {
    std::vector<float> p, m, v;  // one set of buffers, refilled for every unit
    std::vector<int> order;
    files.push_back(write_rank_file(
        checkpoint_tmp_dir(dir.string(), 5), r, world, table,
        [&](int u) {
          order.push_back(u);
          for (auto [which, buf] : {std::pair{0, &p}, std::pair{1, &m}, std::pair{2, &v}}) {
            buf->assign(table.unit_numel(u) + 4096, -7.0f);  // reallocated, old data garbage
            for (int64_t i = 0; i < table.unit_numel(u); ++i) (*buf)[i] = value(which, u, i);
          }
          return UnitState{p.data(), m.data(), v.data(), false, world, r};
        },
        5));
    ASSERT_EQ((int)order.size(), U);
    for (int u = 0; u < U; ++u) EXPECT_EQ(order[u], u);
  }
  TrainState st;
  st.step = 5;
  st.train = nlohmann::json::object();
  const std::string step_dir =
      finish_checkpoint(dir.string(), files, cfg, st, nlohmann::json::object(), 0);
  EXPECT_NO_THROW(read_manifest(step_dir, /*verify=*/true));

  int next = 0;
  load_checkpoint(
      step_dir, cfg, table,
      [&](int u, const std::vector<float>& p, const std::vector<float>* m,
          const std::vector<float>* v) {
        EXPECT_EQ(u, next++);
        ASSERT_TRUE(m && v);
        ASSERT_EQ((int64_t)p.size(), table.unit_numel(u));
        for (int64_t i = 0; i < table.unit_numel(u); ++i) {
          ASSERT_EQ(p[i], value(0, u, i)) << "unit " << u << " element " << i;
          ASSERT_EQ((*m)[i], value(1, u, i));
          ASSERT_EQ((*v)[i], value(2, u, i));
        }
      },
      true, nullptr);
  EXPECT_EQ(next, U);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace zt
