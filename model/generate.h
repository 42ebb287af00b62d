// generate.h: autoregressive decoding with a KV cache (one token at a time, batch 1), and top-k
// sampling.
// Experts are applied dropless at decode time (capacity limits are a training-batch notion).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/acts.h"
#include "model/model.h"

namespace zt {

// One position at a time through the training layers (model/layers.h), with the key/value cache
// (model/acts.h, KVCache) so each position costs one row, not the whole prefix.
class Decoder {
 public:
  explicit Decoder(Model& model);
  void reset() { cache_.len = 0; }
  int position() const { return cache_.len; }
  // Appends `token` at the next position and returns logits [vocab] for the position after it.
  const std::vector<float>& step(int32_t token);

 private:
  Model& m_;
  KVCache cache_;
  Acts acts_;
  std::vector<float> logits_;
};

struct SampleOptions {
  int max_new_tokens = 200;
  float temperature = 0.8f;
  int top_k = 40;  // 0 = all
  uint64_t seed = 1;
};

// Continues `prompt` (token ids); returns only the new tokens. When the context reaches seq_len the
// cache is rebuilt from the last seq_len / 2 tokens (a sliding window).
std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt,
                              const SampleOptions& o);

}  // namespace zt
