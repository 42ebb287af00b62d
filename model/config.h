// config.h: the model's hyper-parameters (SPEC section 1) and their validation.
#pragma once
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace zt {

struct ModelConfig {
  int vocab = 256;
  int layers = 4;
  int model_dim = 256;
  int heads = 4;
  int ffn_dim = 688;  // dense SwiGLU hidden
  int experts = 8;
  int top_k = 2;
  int shared_experts = 1;  // shared FFN hidden = shared_experts * expert_ffn_dim
  int dense_layers = 1;    // the first blocks use the dense FFN
  int expert_ffn_dim = 256;
  double capacity_factor = 0;  // 0 = dropless
  double aux_loss_coef = 0.01;
  bool router_norm = true;
  double rope_base = 10000;
  int seq_len = 128;
  bool untie_embeddings = false;
  float norm_eps = 1e-5f;

  int head_dim() const { return model_dim / heads; }
  bool is_moe(int layer) const { return layer >= dense_layers && experts > 0; }
  void validate() const;  // throws zt::Error naming the flag
  // Parameter counts and FLOPs: model/params.h, count_params (they derive from the table).
};

void to_json(nlohmann::json& j, const ModelConfig& c);
void from_json(const nlohmann::json& j, ModelConfig& c);

}  // namespace zt
