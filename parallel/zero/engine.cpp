// engine.cpp: ZeRO stages 0-3 driven through the model's unit hooks.
#include "parallel/zero/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "optim/clip.h"
#include "runtime/error.h"

namespace zt {

namespace {
struct Span {  // one parameter inside a unit
  int64_t begin, end;
  bool decay;
};
constexpr DType kF32 = DType::fp32;
}  // namespace

struct ZeroEngine::Unit {
  UnitLayout lay;
  std::vector<Span> spans;
  Buffer<float> full;    // stages 0-2: the parameters (params); stage 3: gathered copy (buffers)
  Buffer<float> shard;   // stage 3: this rank's parameters, the fp32 master (params)
  Buffer<float> gfull;   // full gradients: stages 0-1 (grads), stages 2-3 transient (buffers)
  Buffer<float> gshard;  // stages 1-3: reduced gradient shard (grads)
  Buffer<float> gtmp;    // stages 2-3: receive buffer for microbatches after the first
  Buffer<float> m, v;    // AdamW moments: stage 0 full, else shard (optim)
  std::vector<Work> gathers, reduces;
  bool gather_issued = false, gathered = false;
  bool reduce_pending = false, reduce_into_tmp = false;
};

ZeroEngine::ZeroEngine(Transformer& model, Communicator& dp, const ZeroOptions& opt)
    : model_(model), dp_(dp), opt_(opt) {
  ZT_CHECK(opt.stage >= 0 && opt.stage <= 3, "zero stage ", opt.stage);
  const int n = dp.size(), r = dp.rank();
  const int64_t bucket = std::max<int64_t>(1, (int64_t)(opt.bucket_mb * (1 << 20) / 4));
  const int U = model.table.num_units();
  for (int u = 0; u < U; ++u) {
    auto un = std::make_unique<Unit>();
    Unit& x = *un;
    x.lay = make_unit_layout(model.table.unit_numel[u], n, bucket);
    for (const ParamSpec& p : model.table.params)
      if (p.unit == u) x.spans.push_back({p.offset, p.offset + p.numel, p.decay});
    const float* init = model.unit_params[u];
    const int64_t numel = x.lay.numel, padded = x.lay.padded(), shard = x.lay.shard();
    if (opt.stage < 3) {
      x.full.reset(padded, MemCategory::params);
      std::copy(init, init + numel, x.full.data());
    } else {
      x.shard.reset(shard, MemCategory::params);
      for (int c = 0; c < x.lay.chunks(); ++c) {
        int64_t b = x.lay.piece_begin(c, r), e = std::min(b + x.lay.piece(c), numel);
        if (e > b) std::copy(init + b, init + e, x.shard.data() + x.lay.shard_begin(c));
      }
    }
    if (opt.stage <= 1) x.gfull.reset(padded, MemCategory::grads);
    if (opt.stage >= 1) x.gshard.reset(shard, MemCategory::grads);
    const int64_t moments = opt.stage == 0 ? padded : shard;
    x.m.reset(moments, MemCategory::optim);
    x.v.reset(moments, MemCategory::optim);
    units_.push_back(std::move(un));
  }
  model.release_own_storage();
  for (int u = 0; u < U; ++u) {
    Unit& x = *units_[u];
    model.unit_params[u] = opt.stage < 3 ? x.full.data() : nullptr;
    model.unit_grads[u] = opt.stage <= 1 ? x.gfull.data() : nullptr;
  }
  if (opt.stage == 3) model.hooks.before_forward = [this](int u) { on_before_forward(u); };
  model.hooks.before_backward = [this](int u) { on_before_backward(u); };
  model.hooks.grads_ready = [this](int u) { on_grads_ready(u); };
}

ZeroEngine::~ZeroEngine() {
  model_.hooks = UnitHooks{};
  for (auto& x : units_) {  // never leave collectives in flight on buffers we free
    for (Work& w : x->gathers) w.wait();
    for (Work& w : x->reduces) w.wait();
  }
}

const UnitLayout& ZeroEngine::layout(int unit) const { return units_[unit]->lay; }

double ZeroEngine::wait(Work& w) {
  double ms = w.wait();
  exposed_ms_ += ms;
  return ms;
}

void ZeroEngine::wait_all(std::vector<Work>& ws) {
  for (Work& w : ws) wait(w);
  ws.clear();
}

void ZeroEngine::issue_gather(int u) {
  Unit& x = *units_[u];
  if (x.gather_issued) return;
  x.full.reset(x.lay.padded(), MemCategory::buffers);
  for (int c = 0; c < x.lay.chunks(); ++c)
    x.gathers.push_back(dp_.all_gather(x.shard.data() + x.lay.shard_begin(c),
                                       x.full.data() + x.lay.begin[c], x.lay.chunk_len(c), kF32));
  x.gather_issued = true;
  model_.unit_params[u] = x.full.data();
  if (!opt_.overlap) ensure_gathered(u);
}

void ZeroEngine::ensure_gathered(int u) {
  Unit& x = *units_[u];
  if (x.gathered) return;
  issue_gather(u);
  wait_all(x.gathers);
  x.gathered = true;
}

void ZeroEngine::release(int u) {
  Unit& x = *units_[u];
  if (!x.gather_issued) return;
  wait_all(x.gathers);
  x.full.reset(0, MemCategory::buffers);
  x.gather_issued = x.gathered = false;
  model_.unit_params[u] = nullptr;
}

void ZeroEngine::release_gathered() {
  if (opt_.stage < 3) return;
  for (int u = 0; u <= last_unit(); ++u) release(u);
}

// Stage 3 forward: gather u (and the embedding for a tied head), free the unit that finished,
// issue the next gathers.
void ZeroEngine::on_before_forward(int u) {
  ensure_gathered(u);
  if (u == last_unit() && tied()) ensure_gathered(0);
  if (u > 0 && !(u - 1 == 0 && tied())) release(u - 1);
  for (int k = 1; k <= opt_.prefetch && u + k <= last_unit(); ++k) issue_gather(u + k);
}

void ZeroEngine::on_before_backward(int u) {
  if (opt_.stage == 3) {
    ensure_gathered(u);
    if (u == last_unit() && tied()) ensure_gathered(0);
    for (int k = 1; k <= opt_.prefetch && u - k >= 0; ++k) issue_gather(u - k);
  }
  if (opt_.stage >= 2) {
    auto alloc_grads = [&](int w) {
      Unit& x = *units_[w];
      if (x.gfull.size() == 0) x.gfull.reset(x.lay.padded(), MemCategory::buffers);
      model_.unit_grads[w] = x.gfull.data();
    };
    alloc_grads(u);
    if (u == last_unit() && tied()) alloc_grads(0);  // the head writes the embedding's gradient
  }
}

void ZeroEngine::on_grads_ready(int u) {
  Unit& x = *units_[u];
  const bool last_micro = micro_ == micro_total_ - 1;
  const UnitLayout& l = x.lay;
  if (opt_.stage == 0) {
    if (!last_micro) return;
    for (int c = 0; c < l.chunks(); ++c) {
      float* g = x.gfull.data() + l.begin[c];
      x.reduces.push_back(dp_.all_reduce(g, g, l.chunk_len(c), kF32, ReduceOp::sum));
    }
  } else if (opt_.stage == 1) {
    if (!last_micro) return;
    for (int c = 0; c < l.chunks(); ++c)
      x.reduces.push_back(dp_.reduce_scatter(x.gfull.data() + l.begin[c],
                                             x.gshard.data() + l.shard_begin(c), l.chunk_len(c),
                                             kF32, ReduceOp::sum));
  } else {
    x.reduce_into_tmp = micro_ > 0;
    if (x.reduce_into_tmp && x.gtmp.size() == 0) x.gtmp.reset(l.shard(), MemCategory::buffers);
    float* dst = x.reduce_into_tmp ? x.gtmp.data() : x.gshard.data();
    for (int c = 0; c < l.chunks(); ++c)
      x.reduces.push_back(dp_.reduce_scatter(x.gfull.data() + l.begin[c], dst + l.shard_begin(c),
                                             l.chunk_len(c), kF32, ReduceOp::sum));
  }
  x.reduce_pending = true;
  if (!opt_.overlap) finish_reductions(u);
  if (opt_.stage == 3) release(u);  // its parameters are not needed again this step
}

void ZeroEngine::finish_reductions(int u) {
  Unit& x = *units_[u];
  if (!x.reduce_pending) return;
  wait_all(x.reduces);
  x.reduce_pending = false;
  if (opt_.stage < 2) return;
  if (x.reduce_into_tmp) {
    float* g = x.gshard.data();
    const float* t = x.gtmp.data();
    for (int64_t i = 0; i < x.lay.shard(); ++i) g[i] += t[i];
  }
  x.gfull.reset(0, MemCategory::buffers);  // the full gradient lived only for the reduction
  model_.unit_grads[u] = nullptr;
}

void ZeroEngine::begin_step(int micro_batches) {
  ZT_CHECK(micro_batches >= 1, "micro_batches ", micro_batches);
  micro_total_ = micro_batches;
  micro_ = 0;
  exposed_ms_ = 0;
  for (auto& x : units_) {
    if (opt_.stage <= 1) std::memset(x->gfull.data(), 0, x->gfull.size() * sizeof(float));
    x->gtmp.reset(0, MemCategory::buffers);
  }
}

LossParts ZeroEngine::forward(const int32_t* tokens, int B, int T) {
  return model_.forward(tokens, B, T);
}

void ZeroEngine::backward(float loss_scale) {
  ZT_CHECK(micro_ < micro_total_, "more backward passes than begin_step announced");
  model_.backward(loss_scale);
  // Stages 2-3 reduce every microbatch; finish now so the next one starts from clean buffers.
  if (opt_.stage >= 2)
    for (int u = 0; u <= last_unit(); ++u) finish_reductions(u);
  ++micro_;
}

StepStats ZeroEngine::finish_step(double lr, double max_norm, const AdamWConfig& adamw,
                                  int64_t step) {
  ZT_CHECK(micro_ == micro_total_, "finish_step after ", micro_, " of ", micro_total_,
           " microbatches");
  for (int u = 0; u <= last_unit(); ++u) finish_reductions(u);
  const int r = dp_.rank();

  // Global gradient norm: stage 0 holds the whole reduced gradient on every rank; the others
  // add their shards' squares across ranks.
  double sq = 0;
  for (auto& x : units_)
    sq += opt_.stage == 0 ? global_norm_sq(x->gfull.data(), x->lay.padded())
                          : global_norm_sq(x->gshard.data(), x->lay.shard());
  if (opt_.stage > 0 && dp_.size() > 1) {
    float s = (float)sq;
    Work w = dp_.all_reduce(&s, &s, 1, kF32, ReduceOp::sum);
    wait(w);
    sq = s;
  }
  StepStats st;
  st.grad_norm = std::sqrt(sq);
  const float scale = clip_scale(st.grad_norm, max_norm);

  for (auto& xp : units_) {
    Unit& x = *xp;
    const UnitLayout& l = x.lay;
    if (opt_.stage == 0) {
      for (const Span& s : x.spans) {
        float* g = x.gfull.data() + s.begin;
        const int64_t len = s.end - s.begin;
        if (scale < 1.0f)
          for (int64_t i = 0; i < len; ++i) g[i] *= scale;
        adamw_step(x.full.data() + s.begin, x.m.data() + s.begin, x.v.data() + s.begin, g, len,
                   step, (float)lr, adamw, s.decay);
      }
      continue;
    }
    if (scale < 1.0f)
      for (int64_t i = 0; i < l.shard(); ++i) x.gshard[i] *= scale;
    for (int c = 0; c < l.chunks(); ++c) {
      const int64_t pb = l.piece_begin(c, r), pe = pb + l.piece(c), sb = l.shard_begin(c);
      for (const Span& s : x.spans) {
        const int64_t b = std::max(pb, s.begin), e = std::min(pe, s.end);
        if (e <= b) continue;
        const int64_t j = sb + (b - pb);  // shard index of unit element b
        float* p = opt_.stage == 3 ? x.shard.data() + j : x.full.data() + b;
        adamw_step(p, x.m.data() + j, x.v.data() + j, x.gshard.data() + j, e - b, step, (float)lr,
                   adamw, s.decay);
      }
    }
  }
  if (opt_.stage == 1 || opt_.stage == 2) {  // every rank needs every updated parameter
    std::vector<Work> ws;
    for (auto& x : units_)
      for (int c = 0; c < x->lay.chunks(); ++c)
        ws.push_back(dp_.all_gather(x->full.data() + x->lay.piece_begin(c, r),
                                    x->full.data() + x->lay.begin[c], x->lay.chunk_len(c), kF32));
    wait_all(ws);
  }
  st.exposed_ms = exposed_ms_;
  return st;
}

namespace {
// Assembles a sharded buffer (layout l, this rank's shard `part`) into `out` (numel elements).
void gather_shards(Communicator& dp, const UnitLayout& l, const float* part,
                   std::vector<float>& out) {
  std::vector<float> full(l.padded());
  std::vector<Work> ws;
  for (int c = 0; c < l.chunks(); ++c)
    ws.push_back(
        dp.all_gather(part + l.shard_begin(c), full.data() + l.begin[c], l.chunk_len(c), kF32));
  for (Work& w : ws) w.wait();
  out.assign(full.begin(), full.begin() + l.numel);
}
void take_shard(const UnitLayout& l, int r, const std::vector<float>& full, float* part) {
  for (int c = 0; c < l.chunks(); ++c) {
    const int64_t b = l.piece_begin(c, r), e = std::min(b + l.piece(c), l.numel);
    float* dst = part + l.shard_begin(c);
    std::fill(dst, dst + l.piece(c), 0.0f);
    if (e > b) std::copy(full.begin() + b, full.begin() + e, dst);
  }
}
}  // namespace

void ZeroEngine::gather_full_state(std::vector<std::vector<float>>& params,
                                   std::vector<std::vector<float>>* m,
                                   std::vector<std::vector<float>>* v) {
  const size_t U = units_.size();
  params.resize(U);
  if (m) m->resize(U);
  if (v) v->resize(U);
  for (size_t u = 0; u < U; ++u) {
    Unit& x = *units_[u];
    const UnitLayout& l = x.lay;
    if (opt_.stage < 3)
      params[u].assign(x.full.data(), x.full.data() + l.numel);
    else
      gather_shards(dp_, l, x.shard.data(), params[u]);
    for (auto [dst, src] : {std::pair{m, &x.m}, std::pair{v, &x.v}}) {
      if (!dst) continue;
      if (opt_.stage == 0)
        (*dst)[u].assign(src->data(), src->data() + l.numel);
      else
        gather_shards(dp_, l, src->data(), (*dst)[u]);
    }
  }
}

void ZeroEngine::load_full_state(const std::vector<std::vector<float>>& params,
                                 const std::vector<std::vector<float>>* m,
                                 const std::vector<std::vector<float>>* v) {
  const int r = dp_.rank();
  ZT_CHECK(params.size() == units_.size(), "state has ", params.size(), " units");
  for (size_t u = 0; u < units_.size(); ++u) {
    Unit& x = *units_[u];
    const UnitLayout& l = x.lay;
    ZT_CHECK((int64_t)params[u].size() == l.numel, "unit ", u, " size ", params[u].size());
    if (opt_.stage < 3)
      std::copy(params[u].begin(), params[u].end(), x.full.data());
    else
      take_shard(l, r, params[u], x.shard.data());
    for (auto [src, dst] : {std::pair{m, &x.m}, std::pair{v, &x.v}}) {
      if (!src) continue;
      if (opt_.stage == 0)
        std::copy((*src)[u].begin(), (*src)[u].end(), dst->data());
      else
        take_shard(l, r, (*src)[u], dst->data());
    }
  }
}

}  // namespace zt
