// config.cpp: ModelConfig validation and JSON form.
#include "model/config.h"

#include <nlohmann/json.hpp>

#include "runtime/error.h"
#include "runtime/json_num.h"

namespace zt {

int QatConfig::qp() const {
  static const int levels[] = {0, 127, 7, 1};
  return levels[(int)bits];
}

const char* qat_name(QatBits b) {
  static const char* names[] = {"none", "int8", "int4", "int2"};
  return names[(int)b];
}

QatBits parse_qat_bits(const std::string& s, const char* flag) {
  for (QatBits b : {QatBits::none, QatBits::int8, QatBits::int4, QatBits::int2})
    if (s == qat_name(b)) return b;
  fail(flag, " must be one of none, int8, int4, int2 (got '", s, "')");
}

void ModelConfig::validate() const {
  auto need = [](bool ok, auto&&... msg) {
    if (!ok) fail(msg...);
  };
  need(vocab >= 2, "--vocab must be >= 2 (got ", vocab, ")");
  need(layers >= 1, "--layers must be >= 1 (got ", layers, ")");
  need(model_dim >= 2, "--model-dim must be >= 2 (got ", model_dim, ")");
  need(heads >= 1, "--heads must be >= 1 (got ", heads, ")");
  need(model_dim % heads == 0, "--heads ", heads, " does not divide --model-dim ", model_dim);
  need(head_dim() % 2 == 0, "head dimension --model-dim / --heads = ", head_dim(),
       " must be even for RoPE");
  need(dense_layers >= 0 && dense_layers <= layers, "--dense-layers must be in [0, --layers ",
       layers, "] (got ", dense_layers, ")");
  need(dense_layers == 0 || ffn_dim >= 1, "--ffn-dim must be >= 1 (got ", ffn_dim, ")");
  bool has_moe = dense_layers < layers;
  if (has_moe) {
    need(experts >= 1, "--experts must be >= 1 when --dense-layers < --layers (got ", experts, ")");
    need(top_k >= 1 && top_k <= experts, "--top-k must be in [1, --experts ", experts, "] (got ",
         top_k, ")");
    need(expert_ffn_dim >= 1, "--expert-ffn-dim must be >= 1 (got ", expert_ffn_dim, ")");
    need(shared_experts >= 0, "--shared-experts must be >= 0 (got ", shared_experts, ")");
  }
  need(capacity_factor >= 0, "--capacity-factor must be >= 0 (got ", capacity_factor, ")");
  need(aux_loss_coef >= 0, "--aux-loss-coef must be >= 0 (got ", aux_loss_coef, ")");
  need(rope_base > 1, "--rope-base must be > 1 (got ", rope_base, ")");
  need(seq_len >= 1, "--seq-len must be >= 1 (got ", seq_len, ")");
  need(qat.group_size >= 0, "--qat-group-size must be >= 0 (got ", qat.group_size, ")");
  need(qat.start_step >= 0, "--qat-start-step must be >= 0 (got ", qat.start_step, ")");
  if (qat.on() && qat.bits != QatBits::int8 && qat.group_size > 0) {
    for (auto [in, flag] : quantized_inputs())
      need(in % qat.group_size == 0, "--qat-group-size ", qat.group_size,
           " does not divide the input size ", in, " (", flag,
           ") of a quantized weight; pick a size that divides every one, or 0 (per channel)");
  }
}

std::vector<ModelConfig::QuantizedInput> ModelConfig::quantized_inputs() const {
  const bool moe = dense_layers < layers && experts > 0;
  return {{model_dim, "--model-dim"},
          {dense_layers > 0 ? ffn_dim : 0, "--ffn-dim"},
          {moe ? expert_ffn_dim : 0, "--expert-ffn-dim"},
          {moe ? shared_experts * expert_ffn_dim : 0, "--shared-experts x --expert-ffn-dim"}};
}

void to_json(nlohmann::json& j, const ModelConfig& c) {
  j = nlohmann::json{{"vocab", c.vocab},
                     {"layers", c.layers},
                     {"model_dim", c.model_dim},
                     {"heads", c.heads},
                     {"ffn_dim", c.ffn_dim},
                     {"experts", c.experts},
                     {"top_k", c.top_k},
                     {"shared_experts", c.shared_experts},
                     {"dense_layers", c.dense_layers},
                     {"expert_ffn_dim", c.expert_ffn_dim},
                     {"capacity_factor", c.capacity_factor},
                     {"aux_loss_coef", c.aux_loss_coef},
                     {"router_norm", c.router_norm},
                     {"rope_base", c.rope_base},
                     {"seq_len", c.seq_len},
                     {"untie_embeddings", c.untie_embeddings}};
  if (c.qat.on())  // absent without QAT: a plain model's config reads as it always has
    j["qat"] = {{"bits", qat_name(c.qat.bits)},
                {"group_size", c.qat.group_size},
                {"start_step", c.qat.start_step}};
}

void from_json(const nlohmann::json& j, ModelConfig& c) {
  json_whole_to(j, "vocab", c.vocab);
  json_whole_to(j, "layers", c.layers);
  json_whole_to(j, "model_dim", c.model_dim);
  json_whole_to(j, "heads", c.heads);
  json_whole_to(j, "ffn_dim", c.ffn_dim);
  json_whole_to(j, "experts", c.experts);
  json_whole_to(j, "top_k", c.top_k);
  json_whole_to(j, "shared_experts", c.shared_experts);
  json_whole_to(j, "dense_layers", c.dense_layers);
  json_whole_to(j, "expert_ffn_dim", c.expert_ffn_dim);
  j.at("capacity_factor").get_to(c.capacity_factor);
  j.at("aux_loss_coef").get_to(c.aux_loss_coef);
  j.at("router_norm").get_to(c.router_norm);
  j.at("rope_base").get_to(c.rope_base);
  json_whole_to(j, "seq_len", c.seq_len);
  j.at("untie_embeddings").get_to(c.untie_embeddings);
  c.qat = QatConfig{};
  if (j.contains("qat")) {
    const nlohmann::json& q = j.at("qat");
    c.qat.bits = parse_qat_bits(q.at("bits").get<std::string>(), "the config's qat.bits");
    c.qat.group_size = json_whole<int>(q.at("group_size"), "qat.group_size");
    c.qat.start_step = json_whole<int64_t>(q.at("start_step"), "qat.start_step");
  }
}

}  // namespace zt
