// The device passes (model/device/device_passes.h) on the GPU against the same passes on the CPU
// (which give the host passes' bits, tests/unit/test_device_passes.cpp): a dense block, MoE blocks
// with a shared expert and capacity drops, tied and untied heads, two microbatch shapes. Loss
// parts to 1e-5 relative, the expert load and dropped counts exactly (no near ties in these
// tokens), every unit's gradients to 1e-4 of the unit's largest (cuBLAS's and the fused
// attention's summation orders). Skips without a GPU. Also the residual add kernel.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/device/device_passes.h"
#include "model/ops/cuda/ops_cuda.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/error.h"
#include "tests/cuda/cuda_test_util.h"

namespace zt {
namespace {

ModelConfig passes_config(bool untie) {
  ModelConfig c;
  c.vocab = 61, c.layers = 3, c.model_dim = 32, c.heads = 4, c.ffn_dim = 40, c.experts = 4;
  c.top_k = 2, c.shared_experts = 1, c.dense_layers = 1, c.expert_ffn_dim = 24, c.seq_len = 33;
  c.capacity_factor = 1.0, c.untie_embeddings = untie;
  return c;
}

std::vector<int32_t> tokens(int B, int T, int V, int salt) {
  std::vector<int32_t> t((size_t)B * (T + 1));
  for (size_t i = 0; i < t.size(); ++i) t[i] = (int32_t)((i * 17 + salt * 5 + (i * i) % 7) % V);
  return t;
}

double rel(double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-30); }

TEST(CudaPasses, MatchTheCpuPasses) {
  SKIP_WITHOUT_GPU();
  for (bool untie : {false, true}) {
    const ModelConfig cfg = passes_config(untie);
    Model host(cfg, 11);
    DeviceModel cpu(host, DeviceKind::cpu), gpu(host, DeviceKind::cuda);
    for (int u = 0; u < host.table.num_units(); ++u) {
      cpu.upload_params(u, host.unit_params[u]);
      gpu.upload_params(u, host.unit_params[u]);
    }
    DeviceActs ac, ag;
    DeviceScratch sc, sg;
    for (auto [B, T, salt] : {std::tuple{4, 33, 1}, std::tuple{3, 17, 2}}) {
      const std::vector<int32_t> tok = tokens(B, T, cfg.vocab, salt);
      for (int u = 0; u < host.table.num_units(); ++u) cpu.zero_grads(u), gpu.zero_grads(u);
      const LossParts a = device_forward(cpu, ac, tok.data(), B, T);
      device_backward(cpu, ac, sc, 0.5f);
      const LossParts b = device_forward(gpu, ag, tok.data(), B, T);
      device_backward(gpu, ag, sg, 0.5f);
      CUDA_CHECK(cudaDeviceSynchronize());
      const std::string what = cat(untie ? "untied" : "tied", " B ", B, " T ", T);
      EXPECT_LT(rel(b.ce, a.ce), 1e-5) << what;
      EXPECT_LT(rel(b.aux, a.aux), 1e-5) << what;
      EXPECT_EQ(b.dropped, a.dropped) << what;
      EXPECT_GT(a.dropped, 0) << what << ": the case should drop by capacity";
      EXPECT_EQ(b.load, a.load) << what;
      for (int u = 0; u < host.table.num_units(); ++u) {
        const size_t n = (size_t)host.table.unit_numel(u);
        std::vector<float> gc(n, 0.0f), gg(n, 0.0f);
        cpu.download_grads(u, gc.data());
        gpu.download_grads(u, gg.data());
        double num = 0, den = 0;
        for (size_t i = 0; i < n; ++i) {
          if (!std::isfinite(gg[i])) num = INFINITY;
          num = std::max(num, std::fabs((double)gg[i] - gc[i]));
          den = std::max(den, std::fabs((double)gc[i]));
        }
        EXPECT_GT(den, 0) << what << ": unit " << u << " has no gradient";
        EXPECT_LT(num / den, 1e-4) << what << ": unit " << u;
      }
    }
  }
}

TEST(CudaOps, AddIsElementwise) {
  SKIP_WITHOUT_GPU();
  std::vector<float> y(100003), x(y.size());
  for (size_t i = 0; i < y.size(); ++i) y[i] = (float)i * 0.5f, x[i] = 1.0f - (float)(i % 7);
  DeviceVec<float> Y(y), X(x);
  gpu::add(Y.p, X.p, (int64_t)y.size());
  CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> got = Y.to_host();
  for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(got[i], y[i] + x[i]) << i;
}

}  // namespace
}  // namespace zt
