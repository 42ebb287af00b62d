// Runtime basics: tracked allocator counters, dtype conversions, counter-based RNG.
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>

#include "runtime/alloc.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/json_num.h"
#include "runtime/options.h"
#include "runtime/rng.h"
#include "runtime/signals.h"
#include "runtime/tensor.h"

namespace zt {

TEST(Alloc, CountsBytesByCategoryWithPeak) {
  auto before = mem_stats();
  int64_t g0 = before.current[(int)MemCategory::grads];
  {
    Buffer<float> a(1000, MemCategory::grads);
    Buffer<float> b(500, MemCategory::grads);
    EXPECT_EQ(mem_stats().current[(int)MemCategory::grads], g0 + 6000);
    for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], 0.0f);  // zero-initialised
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);
  }
  auto after = mem_stats();
  EXPECT_EQ(after.current[(int)MemCategory::grads], g0);
  EXPECT_GE(after.peak[(int)MemCategory::grads], g0 + 6000);
}

TEST(Signals, PreemptSignalNames) {
  EXPECT_EQ(parse_preempt_signals("USR1,TERM"), (std::vector<int>{SIGUSR1, SIGTERM}));
  EXPECT_EQ(parse_preempt_signals(" sigusr2 , usr2,HUP"), (std::vector<int>{SIGUSR2, SIGHUP}));
  EXPECT_EQ(parse_preempt_signals("ALRM,int"), (std::vector<int>{SIGALRM, SIGINT}));
  for (const char* bad : {"KILL", "USR1,9", "", ",", "SIG"})
    EXPECT_THROW(parse_preempt_signals(bad), Error) << bad;
}

TEST(Tensor, ShapeAndBytes) {
  Tensor t({2, 3, 4}, DType::bf16, MemCategory::activations);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 48u);
  EXPECT_EQ(shape_str(t.shape()), "[2, 3, 4]");
  EXPECT_THROW(t.f32(), Error);
}

TEST(DType, Bf16RoundsToNearestEven) {
  for (float x : {0.0f, 1.0f, -2.5f, 3.14159f, 1e-20f, 6.5e4f, -1e30f}) {
    float y = bf16_to_fp32(fp32_to_bf16(x));
    EXPECT_LE(std::fabs(y - x), std::fabs(x) * (1.0f / 256)) << x;
  }
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(NAN))));
}

TEST(DType, Fp16ExhaustiveRoundTrip) {
  // Every finite fp16 value converts to fp32 and back unchanged.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00u) == 0x7c00u) continue;  // inf / nan
    float f = fp16_to_fp32((uint16_t)h);
    ASSERT_EQ(fp32_to_fp16(f), (uint16_t)h) << std::hex << h;
  }
  EXPECT_EQ(fp32_to_fp16(65536.0f), 0x7c00);               // overflow -> inf
  EXPECT_EQ(fp32_to_fp16(1.0f + 1.0f / 2048), 0x3c00);     // tie rounds to even
  EXPECT_EQ(fp32_to_fp16(1.0f + 3.0f / 2048), 0x3c02);     // tie rounds to even (up)
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
}

TEST(Rng, CounterBasedAndPartitionIndependent) {
  float whole[100], part[40];
  fill_normal(whole, 100, 42, "blocks.0.attn.wq", 0.0f, 1.0f);
  fill_normal(part, 40, 42, "blocks.0.attn.wq", 0.0f, 1.0f, 60);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(part[i], whole[60 + i]);
  float other[100];
  fill_normal(other, 100, 42, "blocks.0.attn.wk", 0.0f, 1.0f);
  EXPECT_NE(other[0], whole[0]);
}

TEST(Rng, NormalMoments) {
  const int n = 200000;
  double s = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    double x = rng_normal(7, 99, i);
    s += x, s2 += x * x;
  }
  double mean = s / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.01);  // 4.5 standard errors
  EXPECT_NEAR(var, 1.0, 0.015);
}

// Whole numbers from configs and manifests: in range or a json type_error naming the key, never
// the library's cast (undefined for 1e300 as an int, 2.5 read as 2).
TEST(JsonWhole, TakesWholeNumbersThatFitAndRefusesTheRest) {
  using nlohmann::json;
  EXPECT_EQ(json_whole<int>(json(7), "k"), 7);
  EXPECT_EQ(json_whole<int>(json(-7), "k"), -7);
  EXPECT_EQ(json_whole<int>(json(4.0), "k"), 4);
  EXPECT_EQ(json_whole<int64_t>(json(INT64_MIN), "k"), INT64_MIN);
  EXPECT_EQ(json_whole<uint64_t>(json(UINT64_MAX), "k"), UINT64_MAX);
  for (const json& bad : {json(1e300), json(2.5), json(-1e300), json(NAN), json(2147483648.0),
                          json(int64_t{1} << 31), json("3"), json(true), json(nullptr)})
    EXPECT_THROW(json_whole<int>(bad, "layers"), json::type_error) << bad.dump();
  EXPECT_THROW(json_whole<uint64_t>(json(-1), "bytes"), json::type_error);
  EXPECT_THROW(json_whole<uint64_t>(json(-1.5), "bytes"), json::type_error);
  EXPECT_THROW(json_whole<int64_t>(json(9223372036854775808.0), "step"), json::type_error);
  EXPECT_THROW(json_whole<int64_t>(json(UINT64_MAX), "step"), json::type_error);
  try {
    json_whole<int>(json(1e300), "shared_experts");
  } catch (const json::type_error& e) {
    EXPECT_NE(std::string(e.what()).find("'shared_experts' must be a whole number"),
              std::string::npos)
        << e.what();
  }
}

TEST(Options, ASingleValuedFlagGivenTwiceTakesTheLastValue) {
  int steps = 0, seq = 0;
  std::vector<std::string> inputs;
  po::options_description d("Test");
  d.add_options()("steps", po::value(&steps)->default_value(1), "")(
      "seq-len", po::value(&seq)->default_value(8), "")("input", po::value(&inputs)->multitoken(),
                                                        "");
  std::vector<std::string> args = {"x",       "--steps", "3",       "--seq-len", "64",
                                   "--steps", "5",       "--input", "a",         "b"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  po::variables_map vm;
  ASSERT_TRUE(parse_options((int)argv.size(), argv.data(), "usage", d, vm));
  EXPECT_EQ(steps, 5);
  EXPECT_EQ(seq, 64);
  EXPECT_EQ(inputs, (std::vector<std::string>{"a", "b"}));
}

}  // namespace zt
