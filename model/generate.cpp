// generate.cpp: KV-cache decoding built from the same ops as training, and top-k sampling.
#include "model/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/error.h"
#include "runtime/rng.h"

namespace zt {

Decoder::Decoder(Transformer& model) : m_(model) {
  const ModelConfig& c = m_.cfg;
  const int d = c.model_dim;
  cache_.capacity = c.seq_len;
  cache_.k.assign(c.layers, std::vector<float>((size_t)c.seq_len * d));
  cache_.v.assign(c.layers, std::vector<float>((size_t)c.seq_len * d));
  for (auto* b : {&x_, &xa_, &q_, &k_, &v_, &att_, &h_, &xf_, &ffn_}) b->assign(d, 0.0f);
  int hid = std::max({c.ffn_dim, c.expert_ffn_dim, c.shared_experts * c.expert_ffn_dim, 1});
  for (auto* b : {&a_, &b_, &s_}) b->assign(hid, 0.0f);
  scores_.assign(c.seq_len, 0.0f);
  logits_.assign(c.vocab, 0.0f);
  rlog_.assign(std::max(c.experts, 1), 0.0f);
  rprob_.assign(std::max(c.experts, 1), 0.0f);
  gates_.assign(std::max(c.top_k, 1), 0.0f);
  idx_.assign(std::max(c.top_k, 1), 0);
}

// ffn_ += gate * SwiGLU_prefix(xf_)
void Decoder::ffn(const std::string& p, int hid, float gate) {
  const int d = m_.cfg.model_dim;
  linear_forward(a_.data(), xf_.data(), m_.param(p + ".w1"), 1, d, hid);
  linear_forward(b_.data(), xf_.data(), m_.param(p + ".w3"), 1, d, hid);
  swiglu_forward(s_.data(), a_.data(), b_.data(), hid);
  for (int i = 0; i < hid; ++i) s_[i] *= gate;
  linear_forward(ffn_.data(), s_.data(), m_.param(p + ".w2"), 1, hid, d, /*accumulate=*/true);
}

const std::vector<float>& Decoder::step(int32_t token) {
  const ModelConfig& c = m_.cfg;
  const int d = c.model_dim, H = c.heads, dh = c.head_dim(), pos = cache_.len;
  ZT_CHECK(pos < cache_.capacity, "KV cache full at ", pos);
  if (token < 0 || token >= c.vocab) fail("token id ", token, " is outside the vocabulary");
  float rstd;
  embedding_forward(x_.data(), &token, m_.param("embed"), 1, d);
  for (int l = 0; l < c.layers; ++l) {
    const std::string b = "blocks." + std::to_string(l);
    rmsnorm_forward(xa_.data(), &rstd, x_.data(), m_.param(b + ".attn_norm"), 1, d, c.norm_eps);
    linear_forward(q_.data(), xa_.data(), m_.param(b + ".attn.wq"), 1, d, d);
    linear_forward(k_.data(), xa_.data(), m_.param(b + ".attn.wk"), 1, d, d);
    linear_forward(v_.data(), xa_.data(), m_.param(b + ".attn.wv"), 1, d, d);
    rope_forward(q_.data(), q_.data(), 1, 1, H, dh, (float)c.rope_base, pos);
    rope_forward(k_.data(), k_.data(), 1, 1, H, dh, (float)c.rope_base, pos);
    float* K = cache_.k[l].data();
    float* V = cache_.v[l].data();
    std::copy(k_.begin(), k_.end(), K + (size_t)pos * d);
    std::copy(v_.begin(), v_.end(), V + (size_t)pos * d);
    const float scale = 1.0f / std::sqrt((float)dh);
    for (int h = 0; h < H; ++h) {
      const float* qh = q_.data() + h * dh;
      float mx = -INFINITY;
      for (int t = 0; t <= pos; ++t) {
        const float* kt = K + (size_t)t * d + h * dh;
        float s = 0;
        for (int i = 0; i < dh; ++i) s += qh[i] * kt[i];
        scores_[t] = s * scale;
        mx = std::max(mx, scores_[t]);
      }
      float sum = 0;
      for (int t = 0; t <= pos; ++t) sum += (scores_[t] = std::exp(scores_[t] - mx));
      float* oh = att_.data() + h * dh;
      std::fill(oh, oh + dh, 0.0f);
      for (int t = 0; t <= pos; ++t) {
        const float* vt = V + (size_t)t * d + h * dh;
        const float p = scores_[t] / sum;
        for (int i = 0; i < dh; ++i) oh[i] += p * vt[i];
      }
    }
    h_ = x_;
    linear_forward(h_.data(), att_.data(), m_.param(b + ".attn.wo"), 1, d, d, true);
    rmsnorm_forward(xf_.data(), &rstd, h_.data(), m_.param(b + ".ffn_norm"), 1, d, c.norm_eps);
    std::fill(ffn_.begin(), ffn_.end(), 0.0f);
    if (!c.is_moe(l)) {
      ffn(b + ".ffn", c.ffn_dim, 1.0f);
    } else {
      linear_forward(rlog_.data(), xf_.data(), m_.param(b + ".moe.router"), 1, d, c.experts);
      router_forward(rprob_.data(), idx_.data(), gates_.data(), rlog_.data(), 1, c.experts, c.top_k,
                     c.router_norm);
      for (int k = 0; k < c.top_k; ++k)
        ffn(b + ".moe.experts." + std::to_string(idx_[k]), c.expert_ffn_dim, gates_[k]);
      if (c.shared_experts > 0) ffn(b + ".moe.shared", c.shared_experts * c.expert_ffn_dim, 1.0f);
    }
    for (int i = 0; i < d; ++i) x_[i] = h_[i] + ffn_[i];
  }
  rmsnorm_forward(xf_.data(), &rstd, x_.data(), m_.param("final_norm"), 1, d, c.norm_eps);
  if (c.untie_embeddings) {
    linear_forward(logits_.data(), xf_.data(), m_.param("head"), 1, d, c.vocab);
  } else {
    const float* E = m_.param("embed");
    for (int t = 0; t < c.vocab; ++t) {
      float s = 0;
      for (int i = 0; i < d; ++i) s += xf_[i] * E[(size_t)t * d + i];
      logits_[t] = s;
    }
  }
  cache_.len = pos + 1;
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

std::vector<int32_t> generate(Transformer& model, const std::vector<int32_t>& prompt,
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
