// small_moe.h (tests): what the layout tests (tensor, pipeline) compare a layout against: the
// small MoE model (sizes every tp of 2 or 4 divides, a dense first block, MoE blocks with a shared
// expert), its token stream, and the one-process reference's optimizer step.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "optim/adamw.h"
#include "optim/clip.h"

namespace zt::test {

inline ModelConfig small_moe_config(int layers) {
  ModelConfig c;
  c.vocab = 48;  // divisible by 4
  c.layers = layers;
  c.model_dim = 16;
  c.heads = 4;
  c.ffn_dim = 24;
  c.experts = 3;
  c.top_k = 2;
  c.shared_experts = 1;
  c.dense_layers = 1;
  c.expert_ffn_dim = 8;
  c.seq_len = 7;
  return c;
}

// Sample j of the stream: T + 1 tokens.
inline void sample_tokens(int64_t j, int T, int V, int32_t* out) {
  for (int t = 0; t <= T; ++t) out[t] = (int32_t)((j * 31 + t * 7 + (j * t) % 5) % V);
}

inline double rel_diff(double a, double b) {
  return std::fabs(a - b) / std::max(std::fabs(b), 1e-30);
}

// The single-process reference's optimizer step over its accumulated gradients: the global norm,
// clipping to max_norm, AdamW with moments of its own. Returns the norm before clipping.
struct ReferenceOptimizer {
  explicit ReferenceOptimizer(Model& model) : ref(model), m(model.table.num_units()), v(m) {
    for (int u = 0; u < model.table.num_units(); ++u) {
      m[u].assign(model.table.unit_numel(u), 0.0f);
      v[u].assign(model.table.unit_numel(u), 0.0f);
    }
  }
  double step(double lr, double max_norm, const AdamWConfig& ac, int64_t step) {
    double sq = 0;
    for (int u = 0; u < ref.table.num_units(); ++u)
      sq += global_norm_sq(ref.unit_grads[u], ref.table.unit_numel(u));
    const float scale = clip_scale(std::sqrt(sq), max_norm);
    for (const ParamSpec& p : ref.table.params) {
      float* g = ref.grad(p.name);
      for (int64_t i = 0; i < p.numel; ++i) g[i] *= scale;
      adamw_step(ref.param(p.name), m[p.unit].data() + p.offset, v[p.unit].data() + p.offset, g,
                 p.numel, step, (float)lr, ac, p.decay);
    }
    return std::sqrt(sq);
  }
  Model& ref;
  std::vector<std::vector<float>> m, v;
};

}  // namespace zt::test
