// generate.cpp: KV-cache decoding through the training layers, and top-k sampling.
#include "model/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/layers.h"
#include "runtime/error.h"
#include "runtime/rng.h"

namespace zt {

Decoder::Decoder(Model& model) : m_(model) {
  const ModelConfig& c = m_.cfg;
  cache_.capacity = c.seq_len;
  cache_.k.assign(c.layers, std::vector<float>((size_t)c.seq_len * c.model_dim));
  cache_.v.assign(c.layers, std::vector<float>((size_t)c.seq_len * c.model_dim));
  acts_.kv = &cache_;
  acts_.dropless = true;
}

const std::vector<float>& Decoder::step(int32_t token) {
  const ModelConfig& c = m_.cfg;
  ZT_CHECK(cache_.len < cache_.capacity, "KV cache full at ", cache_.len);
  if (token < 0 || token >= c.vocab) fail("token id ", token, " is outside the vocabulary");
  const int32_t tokens[2] = {token, 0};  // the target is not used
  load_tokens(m_, acts_, tokens, 1, 1);
  LossParts lp;
  embed_forward(m_, acts_);
  for (int l = 0; l < c.layers; ++l) block_forward(m_, l, acts_, lp);
  head_forward(m_, acts_, lp);
  ++cache_.len;
  logits_.assign(acts_.logits.data(), acts_.logits.data() + c.vocab);
  return logits_;
}

static int32_t sample_token(const std::vector<float>& logits, const SampleOptions& o,
                            uint64_t draw) {
  const int V = (int)logits.size();
  if (o.temperature <= 0)
    return (int32_t)(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  int k = (o.top_k > 0 && o.top_k < V) ? o.top_k : V;
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int a, int b) { return logits[a] > logits[b]; });
  std::vector<double> p(k);
  double mx = logits[order[0]], sum = 0;
  for (int i = 0; i < k; ++i) sum += (p[i] = std::exp((logits[order[i]] - mx) / o.temperature));
  double u = rng_uniform(o.seed, 0x5a3b1e, draw) * sum;
  for (int i = 0; i < k; ++i) {
    if ((u -= p[i]) <= 0) return order[i];
  }
  return order[k - 1];
}

std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt,
                              const SampleOptions& o) {
  if (prompt.empty()) fail("--prompt must not be empty");
  Decoder dec(model);
  const int ctx = model.cfg.seq_len;
  std::vector<int32_t> all(prompt);
  std::vector<int32_t> out;
  auto refill = [&]() {  // rebuild the cache from the last tokens of the context
    dec.reset();
    size_t keep = std::min<size_t>(all.size(), (size_t)std::max(1, ctx / 2));
    const std::vector<float>* lg = nullptr;
    for (size_t i = all.size() - keep; i < all.size(); ++i) lg = &dec.step(all[i]);
    return *lg;
  };
  std::vector<float> logits;
  if ((int)all.size() <= ctx) {
    for (int32_t t : all) logits = dec.step(t);
  } else {
    logits = refill();
  }
  for (int i = 0; i < o.max_new_tokens; ++i) {
    int32_t t = sample_token(logits, o, (uint64_t)i);
    out.push_back(t);
    all.push_back(t);
    logits = dec.position() < ctx ? dec.step(t) : refill();
  }
  return out;
}

}  // namespace zt
