// stages.cpp: the layers of each pipeline stage (stages.h).
#include "parallel/pipeline/stages.h"

#include <algorithm>
#include <limits>
#include <sstream>

#include "runtime/error.h"

namespace zt {

int PipelineLayout::blocks_of(int stage) const {
  int n = 0;
  for (int c = 0; c < chunks; ++c) n += chunk(stage, c).end_block - chunk(stage, c).first_block;
  return n;
}

std::vector<int> parse_pp_split(const std::string& text) {
  std::vector<int> out;
  if (text.empty()) return out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 1)
      fail("--pp-split '", text, "': '", item, "' is not a block count >= 1");
    out.push_back(v);
  }
  return out;
}

std::string pipeline_layout_error(const ModelConfig& c, int P, int V,
                                  const std::vector<int>& split) {
  if (P < 1) return cat("--pp must be >= 1 (got ", P, ")");
  if (P * V > c.layers)
    return cat("--pp ", P, V > 1 ? cat(" x --virtual-stages ", V) : std::string(), " = ", P * V,
               " pipeline pieces is more than the ", c.layers, " blocks (--layers)");
  if (!split.empty()) {
    if ((int)split.size() != P)
      return cat("--pp-split gives ", split.size(), " stages, --pp is ", P);
    int sum = 0;
    for (int k : split) sum += k;
    if (sum != c.layers)
      return cat("--pp-split adds up to ", sum, " blocks, the model has ", c.layers, " (--layers)");
    for (int s = 0; s < P; ++s)
      if (split[s] % V != 0)
        return cat("--virtual-stages ", V, " does not divide the ", split[s], " blocks of stage ",
                   s, " (--pp-split)");
  } else if (V > 1 && c.layers % (P * V) != 0) {
    return cat("--virtual-stages ", V, " does not divide the ", c.layers / P,
               " blocks per stage (--layers ", c.layers, " over --pp ", P, "); give --pp-split");
  }
  return "";
}

namespace {

// Training FLOPs per token of block l (6 x its matmul parameters a token passes through, plus
// attention over the sequence), as count_params counts them.
double block_cost(const ModelConfig& c, int l) {
  const double d = c.model_dim;
  double mm = 4 * d * d;
  if (!c.is_moe(l))
    mm += 3 * d * c.ffn_dim;
  else
    mm += d * c.experts + c.top_k * 3 * d * c.expert_ffn_dim +
          3 * d * c.shared_experts * c.expert_ffn_dim;
  return 6 * mm + 3 * 2 * 2 * (c.seq_len / 2.0) * d;
}

// Contiguous blocks per stage minimising the largest stage's cost (the head's on the last).
std::vector<int> balanced_split(const ModelConfig& c, int P) {
  const int L = c.layers;
  std::vector<double> pre(L + 1, 0);
  for (int l = 0; l < L; ++l) pre[l + 1] = pre[l] + block_cost(c, l);
  const double head = 6.0 * c.model_dim * c.vocab;
  auto cost = [&](int a, int b, bool last) { return pre[b] - pre[a] + (last ? head : 0); };
  const double inf = std::numeric_limits<double>::infinity();
  // best[s][l]: the least largest cost of stages 0..s-1 holding blocks [0, l); cut[s][l] its cut
  std::vector<std::vector<double>> best(P + 1, std::vector<double>(L + 1, inf));
  std::vector<std::vector<int>> cut(P + 1, std::vector<int>(L + 1, 0));
  best[0][0] = 0;
  for (int s = 1; s <= P; ++s)
    for (int l = s; l <= L - (P - s); ++l)
      for (int a = s - 1; a < l; ++a) {
        const double v = std::max(best[s - 1][a], cost(a, l, s == P));
        if (v < best[s][l]) best[s][l] = v, cut[s][l] = a;
      }
  std::vector<int> split(P);
  for (int s = P, l = L; s >= 1; l = cut[s][l], --s) split[s - 1] = l - cut[s][l];
  return split;
}

}  // namespace

PipelineLayout make_pipeline_layout(const ModelConfig& c, int P, int V,
                                    const std::vector<int>& given) {
  const std::string err = pipeline_layout_error(c, P, V, given);
  if (!err.empty()) fail(err);
  std::vector<int> split = given;
  if (split.empty()) split = V == 1 ? balanced_split(c, P) : std::vector<int>(P, c.layers / P);
  PipelineLayout p;
  p.stages = P, p.chunks = V;
  p.virt.resize(P * V);
  int next = 0;
  for (int v = 0; v < P * V; ++v) {  // chunk v / P of stage v % P
    PipeChunk& ch = p.virt[v];
    ch.first_block = next;
    next += split[v % P] / V;
    ch.end_block = next;
    ch.embed = v == 0;
    ch.head = v == P * V - 1;
  }
  return p;
}

std::vector<bool> stage_units(const PipelineLayout& p, const ParamTable& t, const ModelConfig& c,
                              int stage) {
  std::vector<bool> own(t.num_units(), false);
  for (int ch = 0; ch < p.chunks; ++ch) {
    const PipeChunk& k = p.chunk(stage, ch);
    for (int u = 0; u < t.num_units(); ++u) {
      const UnitSpec& s = t.units[u];
      const bool block = (s.kind == UnitKind::block || s.kind == UnitKind::experts) &&
                         s.layer >= k.first_block && s.layer < k.end_block;
      const bool embed = s.kind == UnitKind::embed && (k.embed || (k.head && !c.untie_embeddings));
      const bool head = s.kind == UnitKind::head && k.head;
      if (block || embed || head) own[u] = true;
    }
  }
  return own;
}

}  // namespace zt
