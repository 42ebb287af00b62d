// params.cpp: builds the parameter table of SPEC section 1 in a fixed order.
#include "model/params.h"

#include <cmath>

#include "runtime/error.h"
#include "runtime/rng.h"

namespace zt {

int64_t ParamTable::total_numel() const {
  int64_t n = 0;
  for (int64_t u : unit_numel) n += u;
  return n;
}

int ParamTable::find(const std::string& name) const {
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].name == name) return (int)i;
  return -1;
}

const ParamSpec& ParamTable::at(const std::string& name) const {
  int i = find(name);
  if (i < 0) fail("no parameter named '", name, "' in this model");
  return params[i];
}

ParamTable build_param_table(const ModelConfig& c) {
  ParamTable t;
  const int64_t d = c.model_dim;
  const float std_in = 0.02f, std_out = 0.02f / std::sqrt(2.0f * c.layers);
  int unit = 0;
  auto add = [&](std::string name, Shape shape, float std, bool norm = false) {
    ParamSpec p;
    p.name = std::move(name);
    p.numel = shape_numel(shape);
    p.shape = std::move(shape);
    p.unit = unit;
    p.offset = t.unit_numel[unit];
    p.decay = !norm;
    p.is_norm = norm;
    p.init_std = std;
    t.unit_numel[unit] += p.numel;
    t.params.push_back(std::move(p));
  };
  auto swiglu = [&](const std::string& prefix, int64_t hidden) {
    add(prefix + ".w1", {d, hidden}, std_in);
    add(prefix + ".w2", {hidden, d}, std_out);
    add(prefix + ".w3", {d, hidden}, std_in);
  };

  t.unit_numel.push_back(0);
  add("embed", {c.vocab, d}, std_in);
  for (int l = 0; l < c.layers; ++l) {
    unit = (int)t.unit_numel.size();
    t.unit_numel.push_back(0);
    std::string b = "blocks." + std::to_string(l);
    add(b + ".attn_norm", {d}, 0, true);
    add(b + ".attn.wq", {d, d}, std_in);
    add(b + ".attn.wk", {d, d}, std_in);
    add(b + ".attn.wv", {d, d}, std_in);
    add(b + ".attn.wo", {d, d}, std_out);
    add(b + ".ffn_norm", {d}, 0, true);
    if (!c.is_moe(l)) {
      swiglu(b + ".ffn", c.ffn_dim);
    } else {
      add(b + ".moe.router", {d, c.experts}, std_in);
      for (int e = 0; e < c.experts; ++e)
        swiglu(b + ".moe.experts." + std::to_string(e), c.expert_ffn_dim);
      if (c.shared_experts > 0)
        swiglu(b + ".moe.shared", (int64_t)c.shared_experts * c.expert_ffn_dim);
    }
  }
  unit = (int)t.unit_numel.size();
  t.unit_numel.push_back(0);
  add("final_norm", {d}, 0, true);
  if (c.untie_embeddings) add("head", {d, c.vocab}, std_in);
  return t;
}

void init_unit_params(float* buf, const ParamTable& t, int unit, uint64_t seed) {
  for (const ParamSpec& p : t.params) {
    if (p.unit != unit) continue;
    float* x = buf + p.offset;
    if (p.is_norm) {
      for (int64_t i = 0; i < p.numel; ++i) x[i] = 1.0f;
    } else {
      fill_normal(x, p.numel, seed, p.name, 0.0f, p.init_std);
    }
  }
}

}  // namespace zt
