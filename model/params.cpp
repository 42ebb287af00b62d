// params.cpp: builds the parameter table of SPEC section 1 in a fixed order, and its counts.
#include "model/params.h"

#include <algorithm>
#include <cmath>

#include "model/qat.h"
#include "runtime/error.h"
#include "runtime/rng.h"

namespace zt {

const char* split_name(Split s) {
  static const char* names[] = {"none", "column", "row", "vocab"};
  return names[(int)s];
}

int64_t ParamTable::total_numel() const {
  int64_t n = 0;
  for (const UnitSpec& u : units) n += u.numel;
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

int ParamTable::unit_of(UnitKind kind, int layer) const {
  for (int u = 0; u < num_units(); ++u)
    if (units[u].kind == kind && units[u].layer == layer) return u;
  return -1;
}

std::string tensor_slice_error(const ModelConfig& c, int tp) {
  if (tp < 1) return cat("--tp must be >= 1 (got ", tp, ")");
  if (c.heads % tp != 0) return cat("--tp ", tp, " does not divide --heads ", c.heads);
  const bool dense = c.dense_layers > 0, moe = c.dense_layers < c.layers && c.experts > 0;
  if (dense && c.ffn_dim % tp != 0)
    return cat("--tp ", tp, " does not divide --ffn-dim ", c.ffn_dim);
  if (moe && c.expert_ffn_dim % tp != 0)
    return cat("--tp ", tp, " does not divide --expert-ffn-dim ", c.expert_ffn_dim);
  if (c.vocab % tp != 0) return cat("--tp ", tp, " does not divide --vocab ", c.vocab);
  // QAT groups of a row-parallel weight (wo, every w2) split with its rows.
  const int G = c.qat.group_size;
  if (tp > 1 && c.qat.on() && c.qat.bits != QatBits::int8 && G > 0) {
    for (auto [n, flag] : c.quantized_inputs())  // the row-parallel weights' rows: these too
      if ((n / tp) % G != 0)
        return cat("--qat-group-size ", G, " does not divide ", flag, " / --tp = ", n / tp,
                   " (the rows of a row-parallel weight each tp rank holds)");
  }
  return "";
}

ParamTable build_param_table(const ModelConfig& c, TensorSlice tp, ExpertSlice ep) {
  const std::string err = tensor_slice_error(c, tp.size);
  if (!err.empty()) fail(err);
  ZT_CHECK(tp.rank >= 0 && tp.rank < tp.size, "tensor slice ", tp.rank, " of ", tp.size);
  ZT_CHECK(ep.rank >= 0 && ep.rank < ep.size && (ep.size == 1 || c.experts % ep.size == 0),
           "expert slice ", ep.rank, " of ", ep.size, " with ", c.experts, " experts");
  ParamTable t;
  t.qat = c.qat;
  const int64_t d = c.model_dim;
  const float std_in = 0.02f, std_out = 0.02f / std::sqrt(2.0f * c.layers);
  int layer = -1, expert = -1;
  auto unit = [&](UnitKind kind) { t.units.push_back({kind, layer, 0, 0}); };
  auto add = [&](std::string name, Shape full, float std, Split split, bool norm = false) {
    ParamSpec p;
    p.name = std::move(name);
    p.full_shape = full;
    p.full_numel = shape_numel(full);
    // This rank's slice: split matrices keep 1/size of their columns (column; the untied head's
    // vocabulary) or rows (row; the embedding's vocabulary).
    Shape shape = full;
    const bool by_rows = split == Split::row || (split == Split::vocab && p.name == "embed");
    if (split != Split::none) {
      // A vector ([out]: per-channel step sizes of a column-parallel weight) is one row of
      // columns: its only dimension is the columns.
      ZT_CHECK(full.size() == 2 || !by_rows, p.name, ": a vector cannot split by rows");
      const int dim = by_rows || full.size() == 1 ? 0 : 1;
      shape[dim] = full[dim] / tp.size;
      (by_rows ? p.row0 : p.col0) = shape[dim] * tp.rank;
    }
    p.numel = shape_numel(shape);
    p.shape = std::move(shape);
    p.unit = t.num_units() - 1;
    p.offset = t.units.back().numel;
    p.full_offset = t.units.back().full_numel;
    p.layer = layer;
    p.expert = expert;
    p.split = split;
    p.decay = !norm;
    p.is_norm = norm;
    p.init_std = std;
    t.units.back().numel += p.numel;
    t.units.back().full_numel += p.full_numel;
    t.params.push_back(std::move(p));
  };
  // A block linear: its weight and, with QAT, its step sizes right after it.
  const QatConfig& q = c.qat;
  auto scale_rows = [&](int64_t in) { return in / q.group_rows((int)in); };
  auto linear = [&](const std::string& name, int64_t in, int64_t out, float std, Split split) {
    add(name, {in, out}, std, split);
    if (!q.on()) return;
    const int w = (int)t.params.size() - 1;
    const bool per_channel = q.bits == QatBits::int8 || q.group_size == 0;
    // Split like the weight's columns; a row-parallel weight's groups split with its rows, its
    // per-channel step sizes are whole on every rank.
    const Split ss = split == Split::row ? (per_channel ? Split::none : Split::row) : split;
    add(name + ".qscale", per_channel ? Shape{out} : Shape{scale_rows(in), out}, 0, ss);
    ParamSpec& s = t.params.back();
    s.decay = false;
    s.qweight = w;
    s.lr_scale = kQatStepLr / (float)q.qp();
    t.params[w].qscale = (int)t.params.size() - 1;
  };
  // What a linear and its step sizes add to a logical unit (another rank's experts).
  auto linear_numel = [&](int64_t in, int64_t out) {
    return in * out + (q.on() ? scale_rows(in) * out : 0);
  };
  auto swiglu = [&](const std::string& prefix, int64_t hidden) {
    linear(prefix + ".w1", d, hidden, std_in, Split::column);
    linear(prefix + ".w2", hidden, d, std_out, Split::row);
    linear(prefix + ".w3", d, hidden, std_in, Split::column);
  };

  unit(UnitKind::embed);
  add("embed", {c.vocab, d}, std_in, Split::vocab);
  for (layer = 0; layer < c.layers; ++layer) {
    unit(UnitKind::block);
    std::string b = "blocks." + std::to_string(layer);
    add(b + ".attn_norm", {d}, 0, Split::none, true);
    linear(b + ".attn.wq", d, d, std_in, Split::column);
    linear(b + ".attn.wk", d, d, std_in, Split::column);
    linear(b + ".attn.wv", d, d, std_in, Split::column);
    linear(b + ".attn.wo", d, d, std_out, Split::row);
    add(b + ".ffn_norm", {d}, 0, Split::none, true);
    if (!c.is_moe(layer)) {
      swiglu(b + ".ffn", c.ffn_dim);
      continue;
    }
    add(b + ".moe.router", {d, c.experts}, std_in, Split::none);
    if (c.shared_experts > 0)
      swiglu(b + ".moe.shared", (int64_t)c.shared_experts * c.expert_ffn_dim);
    unit(UnitKind::experts);
    const int e0 = ep.first(c.experts), e1 = e0 + ep.count(c.experts);
    for (expert = 0; expert < c.experts; ++expert) {
      if (expert >= e0 && expert < e1) {
        swiglu(b + ".moe.experts." + std::to_string(expert), c.expert_ffn_dim);
      } else {  // another rank's: only its place in the logical unit
        const int64_t hid = c.expert_ffn_dim;
        t.units.back().full_numel += 2 * linear_numel(d, hid) + linear_numel(hid, d);
      }
    }
    expert = -1;
  }
  layer = -1;
  unit(UnitKind::head);
  add("final_norm", {d}, 0, Split::none, true);
  if (c.untie_embeddings) add("head", {d, c.vocab}, std_in, Split::vocab);
  return t;
}

ParamCounts count_params(const ParamTable& t, const ModelConfig& c) {
  ParamCounts n;
  int64_t experts = 0;                   // routed-expert matrix parameters, all blocks
  for (const ParamSpec& p : t.params) {  // whole tensors, whichever slice the table holds
    n.params += p.full_numel;
    if (p.is_norm || p.qweight >= 0) continue;  // gains and step sizes multiply no activations
    if (p.expert >= 0)
      experts += p.full_numel;
    else if (p.name != "embed" || !c.untie_embeddings)  // the tied embedding is the head matmul
      n.active += p.full_numel;
  }
  if (c.experts > 0) n.active += experts * c.top_k / c.experts;
  // Matmuls: 2 FLOPs per multiply-add, x3 for forward + two backward matmuls. Attention: q k^T and
  // p v each 2 * T * d per token forward (causal: half of the T x T is used, PaLM-style full count
  // would double it; we count only the computed half), x3 for training.
  const double attn = 3.0 * c.layers * 2.0 * 2.0 * (c.seq_len / 2.0) * c.model_dim;
  n.flops_per_token = 6.0 * (double)n.active + attn;
  return n;
}

void init_unit_params(float* buf, const ParamTable& t, int unit, uint64_t seed) {
  for (const ParamSpec& p : t.params) {
    if (p.unit != unit || p.qweight >= 0) continue;  // step sizes: from the weights, below
    float* x = buf + p.offset;
    if (p.is_norm) {
      for (int64_t i = 0; i < p.numel; ++i) x[i] = 1.0f;
    } else if (p.numel == p.full_numel) {
      fill_normal(x, p.numel, seed, p.name, 0.0f, p.init_std);
    } else {  // a slice: each of its rows is a run of the logical tensor's element indices
      const int64_t rows = view_rows(p.shape), cols = view_cols(p.shape);
      const int64_t full_cols = view_cols(p.full_shape);
      for (int64_t r = 0; r < rows; ++r)
        fill_normal(x + r * cols, cols, seed, p.name, 0.0f, p.init_std,
                    (p.row0 + r) * full_cols + p.col0);
    }
  }
  init_unit_step_sizes(t, unit, buf, nullptr, /*mse=*/false);
}

namespace {
template <typename F>
void for_slice_rows(const ParamSpec& p, F&& f) {  // f(local offset, logical offset, count)
  const int64_t rows = view_rows(p.shape), cols = view_cols(p.shape);
  const int64_t full_cols = view_cols(p.full_shape);
  for (int64_t r = 0; r < rows; ++r)
    f(p.offset + r * cols, p.full_offset + (p.row0 + r) * full_cols + p.col0, cols);
}
}  // namespace

void copy_slice(const ParamSpec& p, const float* logical, float* local) {
  for_slice_rows(p, [&](int64_t lo, int64_t fo, int64_t n) {
    std::copy(logical + fo, logical + fo + n, local + lo);
  });
}

void copy_slice_back(const ParamSpec& p, const float* local, float* logical) {
  for_slice_rows(p, [&](int64_t lo, int64_t fo, int64_t n) {
    std::copy(local + lo, local + lo + n, logical + fo);
  });
}

}  // namespace zt
