// export: a checkpoint of a tiny model exported to .h5 and .safetensors reads back bit-exactly,
// through the HDF5 layer, through load_model_weights (what eval uses), and through a plain parse
// of the safetensors format; bad requests fail naming the path and leave no output.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model.h"
#include "offload/checkpoint.h"
#include "offload/export.h"
#include "offload/hdf5.h"
#include "runtime/error.h"
#include "test_util.h"

namespace zt {
namespace {
namespace fs = std::filesystem;

ModelConfig tiny_config() {
  ModelConfig c;
  c.layers = 2;
  c.model_dim = 32;
  c.heads = 4;
  c.ffn_dim = 48;
  c.experts = 4;
  c.top_k = 2;
  c.shared_experts = 1;
  c.dense_layers = 1;
  c.expert_ffn_dim = 16;
  c.seq_len = 16;
  c.untie_embeddings = true;  // "head" exported too
  return c;
}

// A temporary directory holding a checkpoint (step 7) of a tiny model with random weights.
struct ExportFixture : ::testing::Test {
  fs::path dir;
  ModelConfig cfg = tiny_config();
  Model model{cfg, 11, /*with_grads=*/false};

  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("zt_export_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    UnitVectors params(model.table.num_units()), m, v;
    for (int u = 0; u < model.table.num_units(); ++u)
      params[u].assign(model.unit_params[u], model.unit_params[u] + model.table.unit_numel(u));
    m = params;
    v = params;
    TrainState st;
    st.step = 7;
    st.tokens = 7 * 64;
    st.train = nlohmann::json::object();
    save_checkpoint(*make_local_communicator("world"), (dir / "ckpt").string(), cfg, model.table,
                    unit_source(params, m, v), st, nlohmann::json::object(), 0);
  }
  void TearDown() override { fs::remove_all(dir); }

  std::string ckpt() const { return (dir / "ckpt").string(); }
  std::string out(const std::string& name) const { return (dir / name).string(); }
  std::vector<float> param(const ParamSpec& p) {
    const float* x = model.unit_params[p.unit] + p.offset;
    return {x, x + p.numel};
  }
  // Nothing but the checkpoint is left in the directory (no output, no temporary).
  void expect_no_output() const {
    for (const auto& e : fs::directory_iterator(dir))
      EXPECT_EQ(e.path().filename(), "ckpt") << "left behind: " << e.path();
  }
};

using test::error_of;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_F(ExportFixture, H5HoldsEveryParameterExactlyAndTheConfig) {
  ExportSummary s = export_model(ckpt(), out("model.h5"));
  EXPECT_EQ(s.format, "h5");
  EXPECT_EQ(s.step, 7);
  EXPECT_EQ(s.tensors, (int64_t)model.table.params.size());
  H5File f = H5File::open(out("model.h5"));
  EXPECT_EQ(h5_list(f, "params").size(), model.table.params.size());
  for (const ParamSpec& p : model.table.params) {
    EXPECT_EQ(h5_shape(f, "params/" + p.name), p.shape) << p.name;
    EXPECT_EQ(h5_read_f32(f, "params/" + p.name), param(p)) << p.name;
  }
  nlohmann::json saved = nlohmann::json::parse(h5_read_attr_str(f, "/", "config"));
  EXPECT_EQ(saved, nlohmann::json(cfg));
  EXPECT_EQ(h5_read_attr_i64(f, "/", "vocab"), cfg.vocab);
  EXPECT_EQ(h5_read_attr_i64(f, "/", "layers"), cfg.layers);
  EXPECT_EQ(h5_read_attr_i64(f, "/", "model_dim"), cfg.model_dim);
  EXPECT_EQ(h5_read_attr_i64(f, "/", "untie_embeddings"), 1);
  EXPECT_EQ(h5_read_attr_f64(f, "/", "aux_loss_coef"), cfg.aux_loss_coef);
  EXPECT_EQ(h5_read_attr_i64(f, "/", "step"), 7);
  EXPECT_EQ(h5_read_attr_i64(f, "/", "tokens"), 7 * 64);
}

TEST_F(ExportFixture, H5LoadsBackThroughLoadModelWeights) {
  export_model(ckpt(), out("model.h5"));
  ModelConfig back_cfg = checkpoint_model_config(out("model.h5"));
  EXPECT_EQ(nlohmann::json(back_cfg), nlohmann::json(cfg));
  Model back(back_cfg, 99, /*with_grads=*/false);  // other seed: other initial weights
  load_model_weights(out("model.h5"), back);
  for (int u = 0; u < model.table.num_units(); ++u)
    EXPECT_EQ(0, std::memcmp(back.unit_params[u], model.unit_params[u],
                             model.table.unit_numel(u) * sizeof(float)))
        << "unit " << u;
}

// Every damage to a model.h5 is refused by its checksum block before libhdf5 parses the file.
TEST_F(ExportFixture, DamagedH5ExportIsRefusedByItsChecksum) {
  export_model(ckpt(), out("model.h5"));
  const std::string good = read_bytes(out("model.h5"));
  ASSERT_EQ(good.compare(0, 19, "zerotrain model.h5\n"), 0);
  Model back(cfg, 99, /*with_grads=*/false);
  auto write = [&](const std::string& bytes) {
    std::ofstream(out("bad.h5"), std::ios::binary) << bytes;
    return out("bad.h5");
  };
  struct Case {
    std::string what, bytes, expect;
  };
  std::string flipped = good, superblock = good, block = good;
  flipped[good.size() / 2] ^= 0x20;
  superblock[kH5ExportUserBlock + 9] ^= 1;
  block[25] = '?';
  const Case cases[] = {{"a byte of tensor data", flipped, "checksum does not match"},
                        {"the HDF5 superblock", superblock, "checksum does not match"},
                        {"truncated", good.substr(0, good.size() - 100), "truncated or appended"},
                        {"appended to", good + "xx", "truncated or appended"},
                        {"the checksum block", block, "damaged checksum block"},
                        {"no checksum block", good.substr(kH5ExportUserBlock), "no checksum block"},
                        {"empty", "", "no checksum block"}};
  for (const Case& c : cases) {
    const std::string path = write(c.bytes);
    EXPECT_NE(error_of([&] { load_model_weights(path, back); }).find(c.expect), std::string::npos)
        << c.what;
    const std::string e = error_of([&] { checkpoint_model_config(path); });
    EXPECT_NE(e.find(c.expect), std::string::npos) << c.what << ": " << e;
    EXPECT_NE(e.find(path), std::string::npos) << c.what << ": " << e;
  }
  // h5dump and other HDF5 tools read the file as it is (they skip the user block).
  H5File f = H5File::open(write(good));
  EXPECT_EQ(h5_list(f, "params").size(), model.table.params.size());
}

TEST_F(ExportFixture, SafetensorsOffsetsCoverTheDataAndBytesMatch) {
  ExportSummary s = export_model(ckpt(), out("model.safetensors"));
  EXPECT_EQ(s.format, "safetensors");
  const std::string file = read_bytes(out("model.safetensors"));
  ASSERT_GE(file.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | (unsigned char)file[i];
  EXPECT_EQ(n % 8, 0u);
  ASSERT_LE(8 + n, file.size());
  nlohmann::json h = nlohmann::json::parse(file.substr(8, n));
  const std::string data = file.substr(8 + n);

  const auto& meta = h.at("__metadata__");
  for (const auto& [k, v] : meta.items()) EXPECT_TRUE(v.is_string()) << k;
  EXPECT_EQ(nlohmann::json::parse(meta.at("config").get<std::string>()), nlohmann::json(cfg));
  EXPECT_EQ(meta.at("step"), "7");
  EXPECT_EQ(meta.at("tokens"), std::to_string(7 * 64));

  EXPECT_EQ(h.size(), model.table.params.size() + 1);
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (const ParamSpec& p : model.table.params) {
    ASSERT_TRUE(h.contains(p.name)) << p.name;
    const auto& t = h.at(p.name);
    EXPECT_EQ(t.at("dtype"), "F32");
    EXPECT_EQ(t.at("shape").get<Shape>(), p.shape);
    const int64_t b = t.at("data_offsets")[0], e = t.at("data_offsets")[1];
    ASSERT_EQ(e - b, p.numel * (int64_t)sizeof(float)) << p.name;
    ASSERT_LE(e, (int64_t)data.size());
    std::vector<float> x(p.numel);
    std::memcpy(x.data(), data.data() + b, e - b);
    EXPECT_EQ(x, param(p)) << p.name;
    ranges.emplace_back(b, e);
  }
  std::sort(ranges.begin(), ranges.end());
  int64_t at = 0;
  for (const auto& [b, e] : ranges) {
    EXPECT_EQ(b, at);
    at = e;
  }
  EXPECT_EQ(8 + n + at, file.size());  // contiguous from 0, covering the data exactly
}

TEST_F(ExportFixture, ReplacesAnExistingOutputOnlyOnSuccess) {
  std::ofstream(out("model.h5")) << "old";
  EXPECT_NE(error_of([&] { export_model(out("nothing"), out("model.h5")); }), "");
  EXPECT_EQ(read_bytes(out("model.h5")), "old");
  export_model(ckpt(), out("model.h5"));
  H5File f = H5File::open(out("model.h5"));
  EXPECT_TRUE(h5_exists(f, "params/embed"));
}

TEST_F(ExportFixture, BadExtensionNamesThePath) {
  std::string e = error_of([&] { export_model(ckpt(), out("model.bin")); });
  EXPECT_NE(e.find(out("model.bin")), std::string::npos) << e;
  expect_no_output();
}

TEST_F(ExportFixture, MissingCheckpointNamesThePath) {
  std::string e = error_of([&] { export_model(out("nothing"), out("model.h5")); });
  EXPECT_NE(e.find(out("nothing")), std::string::npos) << e;
  expect_no_output();
}

TEST_F(ExportFixture, DamagedCheckpointNamesTheFile) {
  const fs::path rank = dir / "ckpt" / "step_00000007" / "rank_00000.h5";
  {
    std::fstream f(rank, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3000);
    char c = 0;
    f.read(&c, 1);
    f.seekp(3000);
    c = (char)(c ^ 0x5a);
    f.write(&c, 1);
  }
  std::string e = error_of([&] { export_model(ckpt(), out("model.safetensors")); });
  EXPECT_NE(e.find(rank.string()), std::string::npos) << e;
  expect_no_output();
}

TEST_F(ExportFixture, IncompleteCheckpointIsRefused) {
  fs::remove(dir / "ckpt" / "step_00000007" / "COMPLETE");
  std::string e =
      error_of([&] { export_model((dir / "ckpt" / "step_00000007").string(), out("model.h5")); });
  EXPECT_NE(e.find("step_00000007"), std::string::npos) << e;
  expect_no_output();
}

TEST_F(ExportFixture, UnwritableOutputNamesThePath) {
  const std::string bad = out("no/such/dir/model.h5");
  std::string e = error_of([&] { export_model(ckpt(), bad); });
  EXPECT_NE(e.find(bad), std::string::npos) << e;
  expect_no_output();
}

TEST(ExportSafetensorsHeader, PaddedToEightAndInTableOrder) {
  ParamTable t = build_param_table(tiny_config());
  std::string h = safetensors_header(t, {{"format", "pt"}});
  EXPECT_EQ(h.size() % 8, 0u);
  EXPECT_EQ(h.find("{\"__metadata__\""), 0u);
  size_t last = 0;
  for (const ParamSpec& p : t.params) {
    size_t at = h.find("\"" + p.name + "\":");
    ASSERT_NE(at, std::string::npos) << p.name;
    EXPECT_GT(at, last) << p.name;
    last = at;
  }
}

}  // namespace
}  // namespace zt
