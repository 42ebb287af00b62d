// model.cpp: the model's parameters: storage, SPEC init, and the per-block index lookup.
#include "model/model.h"

#include <cstring>

#include "runtime/error.h"

namespace zt {

namespace {
const ModelConfig& validated(const ModelConfig& c) {
  c.validate();
  return c;
}
}  // namespace

Model::Model(const ModelConfig& c, uint64_t seed, bool with_grads, TensorSlice tp,
             std::vector<bool> own, ExpertSlice ep)
    : cfg(validated(c)),
      slice(tp),
      eslice(ep),
      table(build_param_table(c, tp, ep)),
      owned(std::move(own)) {
  const int n = tp.size;
  dims = {c.heads / n,
          c.model_dim / n,
          c.ffn_dim / n,
          c.expert_ffn_dim / n,
          c.shared_experts * c.expert_ffn_dim / n,
          c.vocab / n,
          c.vocab / n * tp.rank,
          ep.count(c.experts),
          ep.first(c.experts)};
  const int U = table.num_units();
  if (owned.empty()) owned.assign(U, true);
  ZT_CHECK((int)owned.size() == U, "owned units: ", owned.size(), " of ", U);
  own_params_.resize(U);
  own_grads_.resize(U);
  unit_params.resize(U, nullptr);
  unit_grads.resize(U, nullptr);
  for (int u = 0; u < U; ++u) {
    if (!owned[u]) continue;
    own_params_[u].reset(table.unit_numel(u), MemCategory::params);
    unit_params[u] = own_params_[u].data();
    init_unit_params(unit_params[u], table, u, seed);
    if (with_grads) {
      own_grads_[u].reset(table.unit_numel(u), MemCategory::grads);
      unit_grads[u] = own_grads_[u].data();
    }
  }
  if (c.qat.on()) qat.fq.resize(table.params.size());
  embed = table.find("embed");
  final_norm = table.find("final_norm");
  head = c.untie_embeddings ? table.find("head") : embed;
  embed_unit = table.unit_of(UnitKind::embed);
  head_unit = table.unit_of(UnitKind::head);
  auto ffn = [&](const std::string& p) {
    return FfnParams{table.find(p + ".w1"), table.find(p + ".w2"), table.find(p + ".w3")};
  };
  for (int l = 0; l < c.layers; ++l) {
    const std::string b = "blocks." + std::to_string(l);
    BlockParams bp;
    bp.attn_norm = table.find(b + ".attn_norm");
    bp.wq = table.find(b + ".attn.wq");
    bp.wk = table.find(b + ".attn.wk");
    bp.wv = table.find(b + ".attn.wv");
    bp.wo = table.find(b + ".attn.wo");
    bp.ffn_norm = table.find(b + ".ffn_norm");
    bp.unit = table.unit_of(UnitKind::block, l);
    if (!c.is_moe(l)) {
      bp.ffn = ffn(b + ".ffn");
    } else {
      bp.router = table.find(b + ".moe.router");
      for (int e = dims.expert0; e < dims.expert0 + dims.experts; ++e)
        bp.experts.push_back(ffn(b + ".moe.experts." + std::to_string(e)));
      if (c.shared_experts > 0) bp.shared = ffn(b + ".moe.shared");
      bp.expert_unit = table.unit_of(UnitKind::experts, l);
    }
    blocks.push_back(std::move(bp));
  }
}

float* Model::param(const std::string& name) {
  const ParamSpec& p = table.at(name);
  return unit_params[p.unit] + p.offset;
}

float* Model::grad(const std::string& name) {
  const ParamSpec& p = table.at(name);
  ZT_CHECK(unit_grads[p.unit], "model was built without gradients");
  return unit_grads[p.unit] + p.offset;
}

void Model::zero_grads() {
  for (int u = 0; u < table.num_units(); ++u)
    if (unit_grads[u]) std::memset(unit_grads[u], 0, sizeof(float) * (size_t)table.unit_numel(u));
}

void Model::release_own_storage() {
  own_params_.clear();
  own_grads_.clear();
}

}  // namespace zt
