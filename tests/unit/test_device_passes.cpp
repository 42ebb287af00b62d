// The device passes (model/device/device_passes.h) on the CPU against the host passes
// (model/passes.h) on the same parameters and tokens: every loss part, the expert load and every
// unit's gradients bitwise equal (the same ops in the same order), for a dense model, a MoE model
// with a shared expert, capacity drops and an untied head, and a second microbatch of another
// shape in the same activations; the unit hooks called in the same sequence; and what the device
// passes do not run refused with one line naming it.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/device/device_passes.h"
#include "model/passes.h"
#include "runtime/error.h"
#include "tests/model_run.h"

namespace zt {
namespace {

ModelConfig moe_config(bool untie) {
  ModelConfig c;
  c.vocab = 29, c.layers = 3, c.model_dim = 16, c.heads = 2, c.ffn_dim = 20, c.experts = 4;
  c.top_k = 2, c.shared_experts = 1, c.dense_layers = 1, c.expert_ffn_dim = 8, c.seq_len = 6;
  c.capacity_factor = 1.0, c.untie_embeddings = untie;
  return c;
}

ModelConfig dense_config() {
  ModelConfig c = moe_config(false);
  c.experts = 0, c.shared_experts = 0, c.dense_layers = c.layers;
  return c;
}

std::vector<int32_t> tokens(int B, int T, int V, int salt) {
  std::vector<int32_t> t((size_t)B * (T + 1));
  for (size_t i = 0; i < t.size(); ++i) t[i] = (int32_t)((i * 13 + salt * 7 + (i * i) % 5) % V);
  return t;
}

// A hook recorder: "u+3f" = use of unit 3 in forward, "d3b", "r3" (grads ready).
struct Recorder {
  std::string log;
  UnitHooks hooks() {
    UnitHooks h;
    h.use = [this](int u, Pass p) { log += cat("u", u, p == Pass::forward ? "f " : "b "); };
    h.done = [this](int u, Pass p) { log += cat("d", u, p == Pass::forward ? "f " : "b "); };
    h.grads_ready = [this](int u) { log += cat("r", u, " "); };
    return h;
  }
};

void expect_same_passes(const ModelConfig& cfg) {
  Model host(cfg, 7);
  test::ModelRun run(host);
  DeviceModel dm(host, DeviceKind::cpu);
  for (int u = 0; u < host.table.num_units(); ++u) dm.upload_params(u, host.unit_params[u]);
  DeviceActs acts;
  DeviceScratch scratch;
  Recorder rec_host, rec_dev;
  const UnitHooks hh = rec_host.hooks(), hd = rec_dev.hooks();
  // Two microbatches of different shapes through the same activations.
  for (auto [B, T, salt] : {std::tuple{3, 6, 1}, std::tuple{2, 4, 2}}) {
    host.zero_grads();
    for (int u = 0; u < host.table.num_units(); ++u) dm.zero_grads(u);
    const std::vector<int32_t> tok = tokens(B, T, cfg.vocab, salt);
    const LossParts a = model_forward(host, run.acts, tok.data(), B, T, &hh, true);
    model_backward(host, run.acts, run.scratch, 0.7f, &hh);
    const LossParts b = device_forward(dm, acts, tok.data(), B, T, &hd, true);
    device_backward(dm, acts, scratch, 0.7f, &hd);
    const std::string what = cat("B ", B, " T ", T, cfg.experts ? " moe" : " dense");
    EXPECT_EQ(a.ce, b.ce) << what;
    EXPECT_EQ(a.aux, b.aux) << what;
    EXPECT_EQ(a.dropped, b.dropped) << what;
    EXPECT_EQ(a.load, b.load) << what;
    EXPECT_EQ(rec_host.log, rec_dev.log) << what;
    for (int u = 0; u < host.table.num_units(); ++u) {
      std::vector<float> want(host.unit_grads[u], host.unit_grads[u] + host.table.unit_numel(u));
      std::vector<float> got(want.size(), -1.0f);
      dm.download_grads(u, got.data());
      EXPECT_EQ(got, want) << what << ": unit " << u;
    }
  }
  if (cfg.experts) {
    EXPECT_GT(run.acts.blocks[1].plan.dropped, 0) << "the case should drop by capacity";
  }
}

TEST(DevicePasses, DenseModelOnTheCpuGivesTheHostPassesBits) { expect_same_passes(dense_config()); }

TEST(DevicePasses, MoeModelOnTheCpuGivesTheHostPassesBits) {
  expect_same_passes(moe_config(false));
  expect_same_passes(moe_config(true));
}

TEST(DevicePasses, WhatTheyDoNotRunIsRefusedByName) {
  ModelConfig c = moe_config(false);
  c.vocab = 30;  // tp 2 divides it
  Model tp(c, 1, true, TensorSlice{2, 0});
  EXPECT_EQ(device_supports(tp), "tensor parallelism (--tp)");
  try {
    DeviceModel dm(tp, DeviceKind::cpu);
    FAIL() << "a tensor-parallel slice was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not run tensor parallelism (--tp)"),
              std::string::npos)
        << e.what();
  }
  Model ep(c, 1, true, {}, {}, ExpertSlice{2, 1});
  EXPECT_EQ(device_supports(ep), "expert parallelism (--ep)");
  Model whole(c, 1);
  EXPECT_EQ(device_supports(whole), "");
}

}  // namespace
}  // namespace zt
