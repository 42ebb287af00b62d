// engine.cpp: ZeRO stages 0-3 driven through the model's unit hooks, fp32 or 16-bit.
#include "parallel/zero/engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "optim/adamw_simd.h"
#include "optim/clip.h"
#include "parallel/comm/gather.h"
#include "parallel/zero/engine_unit.h"
#include "runtime/convert.h"
#include "runtime/error.h"
#include "runtime/metrics.h"
#include "runtime/trace.h"

namespace zt {

namespace {
// Comm-track span of a unit's collectives, from issue until their completion was observed.
void trace_comm(const char* what, int unit, double t0) {
  if (Tracer::get().on())
    Tracer::get().span(cat(what, " unit ", unit), TraceTrack::comm, t0, now_ms());
}
}  // namespace

static void* at(Buffer<uint8_t>& b, DType dt, int64_t i) { return b.data() + i * dtype_size(dt); }

ZeroEngine::ZeroEngine(Model& model, ProcessGrid& grid, const ZeroOptions& opt)
    : model_(model), grid_(grid), opt_(opt) {
  ZT_CHECK(
      opt.precision == DType::fp32 || opt.precision == DType::bf16 || opt.precision == DType::fp16,
      "precision ", dtype_name(opt.precision));
  ZT_CHECK(opt.store || !(opt.optim_in_store || opt.params_in_store), "offload without a store");
  ZT_CHECK(opt.stage == 3 || !opt.params_in_store, "parameter offload needs stage 3");
  loss_scale_ = opt.precision == DType::fp16 ? opt.initial_loss_scale : 1.0;
  const DType cdt = opt.precision;
  const size_t es = dtype_size(cdt);
  const int U = model.table.num_units();
  ZeroPlan plan = plan_zero(model.table, grid.layout(), grid.rank(), opt, model.owned);
  for (int u = 0; u < U; ++u) {
    auto un = std::make_unique<Unit>();
    ZeroUnitPlan& p = plan.units[u];
    un->comm = &grid.group(p.group);
    un->rank = p.group_rank;
    un->lay = std::move(p.lay);
    un->regions = std::move(p.regions);
    un->state_len = p.state_len;
    un->norm = p.norm;
    units_.push_back(std::move(un));
  }
  if (opt.optim_in_store || opt.params_in_store) define_store_arrays(plan.staging);
  for (int u = 0; u < U; ++u) {  // the initial values (SPEC init, from the model's own buffer)
    Unit& x = *units_[u];
    const UnitLayout& l = x.lay;
    const int r = x.rank;
    std::vector<float> init(l.padded(), 0.0f);  // padded with zeros
    std::copy(model.unit_params[u], model.unit_params[u] + l.numel, init.begin());
    std::vector<float> mine(l.shard());
    for (int c = 0; c < l.chunks(); ++c)
      std::copy(init.begin() + l.piece_begin(c, r), init.begin() + l.piece_begin(c, r) + l.piece(c),
                mine.begin() + l.shard_begin(c));
    if (opt.stage < 3) {
      x.pfull.reset(l.padded() * es, MemCategory::params);
      f32_to(x.pfull.data(), cdt, init.data(), l.padded());
    } else if (x.sid[kParams] >= 0) {
      std::vector<uint8_t> p(l.shard() * es);
      f32_to(p.data(), cdt, mine.data(), l.shard());
      store_put(x, kParams, p.data());
    } else {
      x.pshard.reset(l.shard() * es, MemCategory::params);
      f32_to(x.pshard.data(), cdt, mine.data(), l.shard());
    }
    const std::vector<float>& state_init = opt.stage == 0 ? init : mine;
    if (lowp() && x.sid[kMaster] >= 0) {
      store_put(x, kMaster, state_init.data());
    } else if (lowp()) {
      x.master.reset(x.state_len, MemCategory::optim);
      std::copy(state_init.begin(), state_init.end(), x.master.data());
    }
    if (opt.stage <= 1) {
      if (lowp())
        x.g16.reset(l.padded() * es, MemCategory::grads);
      else
        x.gwork.reset(l.padded(), MemCategory::grads);
    }
    if (opt.stage == 1) x.gshard.reset(l.shard() * es, MemCategory::grads);
    if (opt.stage >= 2) x.gacc.reset(l.shard(), MemCategory::grads);
    if (x.sid[kMomentM] >= 0) {
      const std::vector<float> zeros(x.state_len, 0.0f);
      store_put(x, kMomentM, zeros.data());
      store_put(x, kMomentV, zeros.data());
    } else {
      x.m.reset(x.state_len, MemCategory::optim);
      x.v.reset(x.state_len, MemCategory::optim);
    }
  }
  model.release_own_storage();
  for (int u = 0; u < U; ++u) {
    Unit& x = *units_[u];
    const bool direct = !lowp() && opt.stage < 3;  // the model reads the parameters in place
    model.unit_params[u] = direct ? reinterpret_cast<float*>(x.pfull.data()) : nullptr;
    model.unit_grads[u] = x.gwork.size() ? x.gwork.data() : nullptr;
  }
  hooks_.use = [this](int u, Pass p) { p == Pass::forward ? use_forward(u) : use_backward(u); };
  hooks_.done = [this](int u, Pass) { release(u); };
  hooks_.grads_ready = [this](int u) { on_grads_ready(u); };
}

ZeroEngine::~ZeroEngine() {
  for (auto& x : units_) {  // never leave collectives in flight on buffers we free
    for (Work& w : x->gathers) w.wait();
    for (Work& w : x->reduces) w.wait();
    if (x->fetching) x->fetch.wait();
  }
  for (StagingSlot& s : slots_) {  // nor I/O on staging buffers
    for (auto& t : s.reads) t.wait();
    for (auto& t : s.writes) t.wait();
  }
}

double ZeroEngine::wait(Work& w) {
  double ms = w.wait();
  exposed_ms_ += ms;
  if (ms > 0.01 && Tracer::get().on()) {
    double t1 = now_ms();
    Tracer::get().span("wait", TraceTrack::compute, t1 - ms, t1);
  }
  return ms;
}

void ZeroEngine::wait_all(std::vector<Work>& ws) {
  for (Work& w : ws) wait(w);
  ws.clear();
}

void ZeroEngine::issue_gather(int u) {
  Unit& x = *units_[u];
  if (opt_.stage < 3 || x.gather_issued || !model_.owns(u)) return;
  const DType cdt = opt_.precision;
  const UnitLayout& l = x.lay;
  if (x.sid[kParams] >= 0) {  // the shard comes from the store first
    fetch(u);
    wait_io(x.fetch);
    x.fetching = false;
  }
  x.pfull.reset(l.padded() * dtype_size(cdt), MemCategory::buffers, Init::none);  // gathered
  for (int c = 0; c < l.chunks(); ++c)
    x.gathers.push_back(x.comm->all_gather(at(x.pshard, cdt, l.shard_begin(c)),
                                           at(x.pfull, cdt, l.begin[c]), l.chunk_len(c), cdt));
  x.gather_issued = true;
  x.gather_t0 = now_ms();
  if (!opt_.overlap) {
    wait_all(x.gathers);
    trace_comm("all_gather", u, x.gather_t0);
    drop_shard(u);
  }
}

void ZeroEngine::acquire(int u) {
  Unit& x = *units_[u];
  if (x.acquired) return;
  if (opt_.stage == 3 && !x.gathered) {
    issue_gather(u);
    if (!x.gathers.empty()) {
      wait_all(x.gathers);
      trace_comm("all_gather", u, x.gather_t0);
    }
    drop_shard(u);
    x.gathered = true;
  }
  if (lowp()) {
    x.work.reset(x.lay.padded(), MemCategory::buffers, Init::none);
    to_f32(x.work.data(), x.pfull.data(), opt_.precision, x.lay.padded());
    model_.unit_params[u] = x.work.data();
  } else {
    model_.unit_params[u] = reinterpret_cast<float*>(x.pfull.data());
  }
  x.acquired = true;
}

void ZeroEngine::release(int u) {
  Unit& x = *units_[u];
  if (opt_.stage < 3 && !lowp()) return;  // parameters live in place
  wait_all(x.gathers);
  drop_shard(u);
  if (lowp()) x.work.reset(0, MemCategory::buffers);
  if (opt_.stage == 3) x.pfull.reset(0, MemCategory::buffers);
  x.gather_issued = x.gathered = x.acquired = false;
  model_.unit_params[u] = nullptr;
}

void ZeroEngine::release_gathered() {
  for (int u = 0; u <= last_unit(); ++u) release(u);
  drop_all_shards();
}

// Forward: make u's fp32 parameters available, issue the next gathers (and, offloaded, the reads
// ahead of them; at the head, the reads of the units backward gathers first).
void ZeroEngine::use_forward(int u) {
  if (opt_.stage < 3 && !lowp()) return;  // the parameters live in place
  acquire(u);
  for (int k = 1; k <= opt_.prefetch && u + k <= last_unit(); ++k) issue_gather(u + k);
  if (u + opt_.prefetch + 1 <= last_unit()) read_ahead(u + opt_.prefetch + 1);
  if (u == last_unit())
    for (int k = 1; k <= std::max(1, opt_.prefetch) && u - k >= 0; ++k) read_ahead(u - k);
}

void ZeroEngine::alloc_grads(int u) {
  Unit& x = *units_[u];
  if (x.gwork.size() == 0) x.gwork.reset(x.lay.padded(), MemCategory::buffers);
  model_.unit_grads[u] = x.gwork.data();
}

void ZeroEngine::use_backward(int u) {
  if ((opt_.stage == 3 || lowp()) && !keep_params_) {
    acquire(u);
    for (int k = 1; k <= opt_.prefetch && u - k >= 0; ++k) issue_gather(u - k);
    if (u - opt_.prefetch - 1 >= 0) read_ahead(u - opt_.prefetch - 1);
  }
  if (opt_.stage >= 2 || lowp()) alloc_grads(u);  // backward writes fp32 gradients here
}

void ZeroEngine::on_grads_ready(int u) {
  Unit& x = *units_[u];
  const DType cdt = opt_.precision;
  const UnitLayout& l = x.lay;
  const bool last_micro = per_step_ || micro_ == micro_total_ - 1;
  if (opt_.stage <= 1) {
    void* g = x.gwork.data();  // fp32: accumulated in place over the microbatches
    if (lowp()) {              // 16-bit: add this microbatch into the 16-bit gradient
      accumulate_into(x.g16.data(), cdt, x.gwork.data(), l.padded());
      x.gwork.reset(0, MemCategory::buffers);
      model_.unit_grads[u] = nullptr;
      g = x.g16.data();
    }
    if (!last_micro) return;
    for (int c = 0; c < l.chunks(); ++c) {
      void* gc = static_cast<char*>(g) + l.begin[c] * dtype_size(cdt);
      x.reduces.push_back(opt_.stage == 0
                              ? x.comm->all_reduce(gc, gc, l.chunk_len(c), cdt, ReduceOp::sum)
                              : x.comm->reduce_scatter(gc, at(x.gshard, cdt, l.shard_begin(c)),
                                                       l.chunk_len(c), cdt, ReduceOp::sum));
    }
  } else {
    void* g = x.gwork.data();
    if (lowp()) {  // communicate in 16 bits
      x.g16.reset(l.padded() * dtype_size(cdt), MemCategory::buffers, Init::none);
      f32_to(x.g16.data(), cdt, x.gwork.data(), l.padded());
      x.gwork.reset(0, MemCategory::buffers);
      model_.unit_grads[u] = nullptr;
      g = x.g16.data();
    }
    x.grecv.reset(l.shard() * dtype_size(cdt), MemCategory::buffers, Init::none);  // reduced
    for (int c = 0; c < l.chunks(); ++c)
      x.reduces.push_back(x.comm->reduce_scatter(
          static_cast<char*>(g) + l.begin[c] * dtype_size(cdt), at(x.grecv, cdt, l.shard_begin(c)),
          l.chunk_len(c), cdt, ReduceOp::sum));
  }
  x.reduce_pending = true;
  x.reduce_t0 = now_ms();
  if (!opt_.overlap) finish_reductions(u);
}

void ZeroEngine::finish_reductions(int u) {
  Unit& x = *units_[u];
  if (!x.reduce_pending) return;
  wait_all(x.reduces);
  trace_comm(opt_.stage == 0 ? "all_reduce" : "reduce_scatter", u, x.reduce_t0);
  x.reduce_pending = false;
  if (opt_.stage < 2) return;
  add_to_f32(x.gacc.data(), x.grecv.data(), opt_.precision, x.lay.shard());
  x.grecv.reset(0, MemCategory::buffers);  // the full gradient lived only for the reduction
  x.g16.reset(0, MemCategory::buffers);
  x.gwork.reset(0, MemCategory::buffers);
  model_.unit_grads[u] = nullptr;
}

// With a tied head on the last pipeline stage, the first and the last stage each hold the
// embedding and each has the gradient of its own uses: after the dp reductions they add the two
// (the same bits on both, so the replicas stay equal).
void ZeroEngine::sum_tied_embedding() {
  Communicator& pair = grid_.embed();
  const int u = model_.embed_unit;
  if (pair.size() == 1 || model_.cfg.untie_embeddings) return;  // no replica
  ZT_CHECK(model_.owns(u), "a first or last pipeline stage without the tied embedding");
  Unit& x = *units_[u];
  const DType cdt = opt_.precision;
  void* g = nullptr;
  int64_t n = 0;
  DType dt = DType::fp32;
  if (opt_.stage >= 2) {
    g = x.gacc.data(), n = x.lay.shard();
  } else if (opt_.stage == 1) {
    g = x.gshard.data(), n = x.lay.shard(), dt = cdt;
  } else if (lowp()) {
    g = x.g16.data(), n = x.lay.padded(), dt = cdt;
  } else {
    g = x.gwork.data(), n = x.lay.padded();
  }
  Work w = pair.all_reduce(g, g, (size_t)n, dt, ReduceOp::sum);
  wait(w);
}

void ZeroEngine::begin_step(int micro_batches, bool per_step) {
  ZT_CHECK(micro_batches >= 1, "micro_batches ", micro_batches);
  micro_total_ = micro_batches;
  micro_ = 0;
  per_step_ = per_step;
  exposed_ms_ = io_wait_ms_ = 0;
  if (opt_.store) opt_.store->check();
  for (auto& x : units_) {
    auto clear = [](void* p, size_t bytes) {  // empty buffers have no storage
      if (bytes) std::memset(p, 0, bytes);
    };
    for (Buffer<uint8_t>* b : {&x->g16, &x->gshard})
      if (opt_.stage <= 1) clear(b->data(), b->size());
    if (opt_.stage <= 1 && !lowp()) clear(x->gwork.data(), x->gwork.size() * 4);
    if (opt_.stage >= 2) clear(x->gacc.data(), x->gacc.size() * 4);
  }
}

void ZeroEngine::end_microbatch() {
  ZT_CHECK(micro_ < micro_total_, "more microbatches than begin_step announced");
  // Stages 2-3 reduce every microbatch; finish now so the next one starts from clean buffers.
  if (opt_.stage >= 2)
    for (int u = 0; u <= last_unit(); ++u) finish_reductions(u);
  ++micro_;
}

// Are this rank's reduced gradients finite? Agreed over the ranks (max of the flags).
bool ZeroEngine::grads_finite() {
  float bad = 0;
  for (auto& x : units_) {
    const Unit& u = *x;
    bool ok = opt_.stage == 0   ? (lowp() ? all_finite(u.g16.data(), opt_.precision, u.lay.padded())
                                          : all_finite(u.gwork.data(), DType::fp32, u.lay.padded()))
              : opt_.stage == 1 ? all_finite(u.gshard.data(), opt_.precision, u.lay.shard())
                                : all_finite(u.gacc.data(), DType::fp32, u.lay.shard());
    if (!ok) bad = 1;
  }
  Communicator& world = grid_.world();
  if (world.size() > 1) {
    ControlTraffic control;
    Work w = world.all_reduce(&bad, &bad, 1, DType::fp32, ReduceOp::max);
    wait(w);
  }
  return bad == 0;
}

StepStats ZeroEngine::finish_step(double lr, double max_norm, const AdamWConfig& adamw,
                                  int64_t step, StepGuard guard) {
  ZT_CHECK(per_step_ || micro_ == micro_total_, "finish_step after ", micro_, " of ", micro_total_,
           " microbatches");
  for (int u = 0; u <= last_unit(); ++u) finish_reductions(u);
  sum_tied_embedding();
  drop_all_shards();  // parameter shards read ahead but not gathered: the step rewrites them
  const DType cdt = opt_.precision;
  StepStats st;
  st.loss_scale = loss_scale_;

  if (opt_.precision == DType::fp16) {  // dynamic loss scaling
    if (!grads_finite()) {
      st.skipped = true;
      ++skipped_steps_;
      loss_scale_ = std::max(1.0, loss_scale_ / 2);
      good_steps_ = 0;
      st.exposed_ms = exposed_ms_;
      st.io_wait_ms = io_wait_ms_;
      return st;
    }
    if (++good_steps_ >= opt_.growth_interval) loss_scale_ *= 2, good_steps_ = 0;
  }

  // The gradient this rank updates from, as fp32: stage 0 the whole reduced gradient, stage 1 the
  // reduce-scatter result, stages 2-3 the fp32 accumulator.
  std::vector<std::vector<float>> g32(units_.size());
  auto grad_of = [&](size_t u) -> const float* {
    Unit& x = *units_[u];
    if (opt_.stage >= 2) return x.gacc.data();
    if (opt_.stage == 0 && !lowp()) return x.gwork.data();
    const int64_t len = opt_.stage == 0 ? x.lay.padded() : x.lay.shard();
    g32[u].resize(len);
    to_f32(g32[u].data(), opt_.stage == 0 ? x.g16.data() : x.gshard.data(), cdt, len);
    return g32[u].data();
  };
  std::vector<const float*> grads(units_.size());
  double sq = 0;  // this rank's part of the squared norm: each element counted on one rank
  for (size_t u = 0; u < units_.size(); ++u) {
    const Unit& x = *units_[u];
    grads[u] = grad_of(u);
    if (x.norm == NormPart::all)
      sq += global_norm_sq(grads[u], opt_.stage == 0 ? x.lay.padded() : x.lay.shard());
    else if (x.norm == NormPart::regions)
      for (const UpdateRegion& g : x.regions)
        if (g.norm) sq += global_norm_sq(grads[u] + g.j, g.len);
  }
  sq = sum_exact(grid_.world(), sq);
  st.grad_norm = std::sqrt(sq) / loss_scale_;
  if (guard.skip || (guard.skip_nonfinite && !std::isfinite(st.grad_norm))) {
    st.skipped = true;
    st.exposed_ms = exposed_ms_;
    st.io_wait_ms = io_wait_ms_;
    return st;
  }
  AdamWOptions ao;
  ao.grad_scale = clip_scale(st.grad_norm, max_norm) / (float)loss_scale_;
  ao.p16_dtype = cdt;

  run_updates(grads, ao, lr, adamw, step);
  // The next forward's first units, read from the store while this step is logged.
  for (int k = 0; k <= opt_.prefetch && k <= last_unit(); ++k) read_ahead(k);
  if (opt_.stage == 1 || opt_.stage == 2) {  // every rank needs every updated parameter
    const double t0 = now_ms();
    std::vector<Work> ws;
    for (auto& x : units_)
      for (int c = 0; c < x->lay.chunks(); ++c)
        ws.push_back(x->comm->all_gather(at(x->pfull, cdt, x->lay.piece_begin(c, x->rank)),
                                         at(x->pfull, cdt, x->lay.begin[c]), x->lay.chunk_len(c),
                                         cdt));
    wait_all(ws);
    trace_comm("all_gather updated", -1, t0);
  }
  st.exposed_ms = exposed_ms_;
  st.io_wait_ms = io_wait_ms_;
  return st;
}

}  // namespace zt
