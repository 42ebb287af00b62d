// HDF5 layer: reads of the PyTorch reference file (read-only) and a write/read round trip.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "offload/hdf5.h"
#include "runtime/error.h"
#include "test_util.h"

namespace zt {

namespace {

const std::string kReference = std::string(ZT_REFERENCE_DIR) + "/tiny_moe.h5";

using test::error_of;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST(Hdf5, ReadsReferenceFile) {
  H5File f = H5File::open(kReference);
  using Shape = std::vector<int64_t>;
  EXPECT_EQ(h5_shape(f, "/dropless/params/embed"), (Shape{256, 32}));
  EXPECT_EQ(h5_shape(f, "/dropless/tokens"), (Shape{2, 17}));
  EXPECT_EQ(h5_shape(f, "/dropless/ce"), Shape{});  // scalar
  EXPECT_EQ(h5_read_f64(f, "/dropless/ce").size(), 1u);

  std::vector<int64_t> tokens = h5_read_i64(f, "/dropless/tokens");  // stored as int32
  ASSERT_EQ(tokens.size(), 34u);
  EXPECT_EQ((Shape{tokens[0], tokens[1], tokens[2], tokens[17]}), (Shape{129, 35, 185, 176}));
  EXPECT_EQ(h5_read_f32(f, "/dropless/params/embed").size(), 256u * 32);
  std::vector<double> embed64 = h5_read_f64(f, "dropless/params/embed");
  std::vector<float> embed32 = h5_read_f32(f, "dropless/params/embed");
  EXPECT_EQ((float)embed64[100], embed32[100]);

  EXPECT_TRUE(contains(h5_read_attr_str(f, "/", "what"), "PyTorch float64 reference"));
  EXPECT_EQ(h5_read_attr_i64(f, "/dropless", "model_dim"), 32);
  EXPECT_DOUBLE_EQ(h5_read_attr_f64(f, ".", "adamw_lr"), 0.001);
  EXPECT_DOUBLE_EQ(h5_read_attr_f64(f, "/dropless", "model_dim"), 32.0);  // converted
  EXPECT_TRUE(h5_attr_exists(f, "/dropless", "top_k"));
  EXPECT_FALSE(h5_attr_exists(f, "/dropless", "no_such_attr"));
  EXPECT_FALSE(h5_attr_exists(f, "/no/such/group", "top_k"));

  H5Group g = H5Group::open(f, "/dropless");
  EXPECT_EQ(h5_shape(g, "params/embed"), (Shape{256, 32}));
  EXPECT_EQ(h5_read_attr_i64(g, ".", "model_dim"), 32);
  std::vector<std::string> children = h5_list(g, ".");
  EXPECT_EQ(children, (std::vector<std::string>{"adamw_step1", "aux_loss", "ce", "grads", "hidden",
                                                "logits", "loss", "params", "tokens"}));
  EXPECT_TRUE(h5_exists(f, "/dropless/params/embed"));
  EXPECT_TRUE(h5_exists(g, "params"));
  EXPECT_FALSE(h5_exists(f, "/dropless/params/nope"));
  EXPECT_FALSE(h5_exists(f, "/nope/deeper/still"));
}

TEST(Hdf5, ErrorsNameFileAndObject) {
  H5File f = H5File::open(kReference);
  std::string msg = error_of([&] { h5_read_f32(f, "/dropless/params/nope"); });
  EXPECT_TRUE(contains(msg, "tiny_moe.h5")) << msg;
  EXPECT_TRUE(contains(msg, "'/dropless/params/nope'")) << msg;
  H5Group g = H5Group::open(f, "dropless");
  msg = error_of([&] { h5_shape(g, "params/missing"); });
  EXPECT_TRUE(contains(msg, "'/dropless/params/missing'")) << msg;
  msg = error_of([&] { h5_read_attr_i64(f, "/dropless", "no_such_attr"); });
  EXPECT_TRUE(contains(msg, "tiny_moe.h5") && contains(msg, "no_such_attr")) << msg;
  msg = error_of([&] { h5_read_attr_str(f, "/dropless", "model_dim"); });
  EXPECT_TRUE(contains(msg, "model_dim") && contains(msg, "not a string")) << msg;
  msg = error_of([&] { h5_list(f, "/dropless/tokens"); });
  EXPECT_TRUE(contains(msg, "/dropless/tokens")) << msg;
  msg = error_of([] { H5File::open("/nonexistent/dir/x.h5"); });
  EXPECT_TRUE(contains(msg, "/nonexistent/dir/x.h5")) << msg;
}

TEST(Hdf5, WriteReadRoundTrip) {
  namespace fs = std::filesystem;
  std::string path =
      (fs::temp_directory_path() / ("zt_test_hdf5_" + std::to_string(::getpid()) + ".h5")).string();
  std::vector<float> w = {1.5f, -2.0f, 3.25f, 0.0f, 1e-7f, -1e7f};
  std::vector<int64_t> ids = {1, -2, int64_t{1} << 40};
  double one = 1.0;
  {
    H5File f = H5File::create(path);
    h5_write_f32(f, "/params/blocks.0.attn.wq", w.data(), {2, 3});  // creates /params
    H5Group g = H5Group::create(f, "/state/rank0");
    h5_write_i64(g, "ids", ids.data(), {3});
    h5_write_f64(g, "step", &one, {});
    h5_write_attr_str(f, "/", "what", "zerotrain test \xe6\x9d\x8e");
    h5_write_attr_i64(g, ".", "rank", 3);
    h5_write_attr_f64(f, "/params", "lr", 0.5);
    h5_write_attr_f64(f, "/params", "lr", 0.25);  // replaces
    std::string msg = error_of([&] { h5_write_f32(f, "params/blocks.0.attn.wq", w.data(), {6}); });
    EXPECT_TRUE(contains(msg, path) && contains(msg, "exists")) << msg;
    f.close();
  }
  {
    H5File f = H5File::open(path);
    EXPECT_EQ(h5_shape(f, "params/blocks.0.attn.wq"), (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(h5_read_f32(f, "params/blocks.0.attn.wq"), w);
    EXPECT_EQ(h5_read_i64(f, "/state/rank0/ids"), ids);
    EXPECT_EQ(h5_read_f64(f, "/state/rank0/step"), std::vector<double>{1.0});
    EXPECT_EQ(h5_read_attr_str(f, "/", "what"), "zerotrain test \xe6\x9d\x8e");
    EXPECT_EQ(h5_read_attr_i64(f, "/state/rank0", "rank"), 3);
    EXPECT_EQ(h5_read_attr_f64(f, "/params", "lr"), 0.25);
    EXPECT_EQ(h5_list(f, "/"), (std::vector<std::string>{"params", "state"}));
    EXPECT_EQ(h5_list(f, "/state/rank0"), (std::vector<std::string>{"ids", "step"}));
  }
  fs::remove(path);
}

}  // namespace zt
