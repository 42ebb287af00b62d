// config.h: the model's hyper-parameters (SPEC section 1) and their validation.
#pragma once
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace zt {

// Quantization-aware training (SPEC section 7): which linears train through fake quant, at how
// many bits, in which groups, from which step. Part of the model: it adds the step-size
// parameters (`<weight>.qscale`) to the table and changes the forward pass.
enum class QatBits : uint8_t { none, int8, int4, int2 };
struct QatConfig {
  QatBits bits = QatBits::none;
  int group_size = 32;     // input rows per step size (int4, int2); 0 = one per output channel
  int64_t start_step = 0;  // fake quant from the step after this many completed steps
  bool on() const { return bits != QatBits::none; }
  int qp() const;  // the largest level: 127, 7, 1 (levels -qp..qp)
  // Input rows sharing a step size for a weight of `in` rows: int8 always per output channel.
  int group_rows(int in) const {
    return bits == QatBits::int8 || group_size == 0 ? in : group_size;
  }
  bool operator==(const QatConfig& o) const {
    return bits == o.bits && group_size == o.group_size && start_step == o.start_step;
  }
};
// Do step sizes saved under `saved` fit a model of `now` (same shapes: bits and groups)?
inline bool qat_scales_match(const QatConfig& saved, const QatConfig& now) {
  return saved.bits == now.bits &&
         (saved.bits == QatBits::int8 || saved.group_size == now.group_size);
}
const char* qat_name(QatBits b);                                 // "none", "int8", "int4", "int2"
QatBits parse_qat_bits(const std::string& s, const char* flag);  // throws naming the flag

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
  QatConfig qat;

  int head_dim() const { return model_dim / heads; }
  bool is_moe(int layer) const { return layer >= dense_layers && experts > 0; }
  // The input sizes of the quantized weights (QAT), each with the flag that sets it: d (q, k, v,
  // o, every w1 / w3) and the FFN hiddens (the w2s); 0 for a kind the model does not have.
  struct QuantizedInput {
    int size;
    const char* flag;
  };
  std::vector<QuantizedInput> quantized_inputs() const;
  void validate() const;  // throws zt::Error naming the flag
  // Parameter counts and FLOPs: model/params.h, count_params (they derive from the table).
};

void to_json(nlohmann::json& j, const ModelConfig& c);
void from_json(const nlohmann::json& j, ModelConfig& c);

}  // namespace zt
