// generate.h: autoregressive decoding with a KV cache (one token at a time, batch 1).
// Experts are applied dropless at decode time (capacity limits are a training-batch notion).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/transformer.h"

namespace zt {

struct KVCache {
  int capacity = 0, len = 0;             // positions held / used
  std::vector<std::vector<float>> k, v;  // [layers][capacity * d], k after RoPE
};

class Decoder {
 public:
  explicit Decoder(Transformer& model);
  void reset() { cache_.len = 0; }
  int position() const { return cache_.len; }
  // Appends `token` at the next position and returns logits [vocab] for the position after it.
  const std::vector<float>& step(int32_t token);

 private:
  Transformer& m_;
  KVCache cache_;
  std::vector<float> x_, xa_, q_, k_, v_, att_, h_, xf_, ffn_, a_, b_, s_, scores_, logits_;
  std::vector<float> rlog_, rprob_, gates_;
  std::vector<int32_t> idx_;
  void ffn(const std::string& prefix, int hidden, float gate);
};

struct SampleOptions {
  int max_new_tokens = 200;
  float temperature = 0.8f;
  int top_k = 40;  // 0 = all
  uint64_t seed = 1;
};

// Continues `prompt` (token ids); returns only the new tokens. When the context reaches seq_len the
// cache is rebuilt from the last seq_len / 2 tokens (a sliding window).
std::vector<int32_t> generate(Transformer& model, const std::vector<int32_t>& prompt,
                              const SampleOptions& o);

}  // namespace zt
