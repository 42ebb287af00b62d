// engine_offload.cpp: the ZeRO engine's state store side (engine.h, "Offload") and the
// optimizer update over every unit, in memory or streamed through the store tile by tile.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "parallel/zero/engine.h"
#include "parallel/zero/engine_unit.h"
#include "runtime/error.h"
#include "runtime/metrics.h"
#include "runtime/trace.h"

namespace zt {
namespace {

constexpr int kSlots = kStagingSlots;

const char* array_name(int a) {
  static const char* names[] = {"params", "master", "exp_avg", "exp_avg_sq"};
  return names[a];
}

}  // namespace

void ZeroEngine::define_store_arrays(const StagingPlan& staging) {
  StateStore& st = *opt_.store;
  const DType cdt = opt_.precision;
  for (size_t u = 0; u < units_.size(); ++u) {
    Unit& x = *units_[u];
    if (!model_.owns((int)u)) continue;  // another pipeline stage's unit: nothing here
    auto def = [&](int a, DType dt) {
      x.sid[a] = st.define(cat("unit_", u, "/", array_name(a)), dt, x.state_len);
    };
    if (opt_.params_in_store) def(kParams, cdt);
    if (opt_.optim_in_store) {
      if (lowp()) def(kMaster, DType::fp32);
      def(kMomentM, DType::fp32);
      def(kMomentV, DType::fp32);
    }
  }
  // The staging tiles and what the buffer leaves to parameter shards: plan_zero's (plan.h).
  if (!staging.error.empty()) fail(staging.error);
  tile_ = staging.tile;
  shard_budget_ = staging.shard_budget;
  st.open();
}

void ZeroEngine::store_put(Unit& x, int a, const void* src) {
  ZT_CHECK(x.sid[a] >= 0, "array ", array_name(a), " is not in the store");
  StateStore::Ticket t = opt_.store->write(x.sid[a], 0, x.state_len, src);
  wait_io(t);
}

const float* ZeroEngine::f32_state(Unit& x, int a, std::vector<float>& tmp) {
  if (x.sid[a] >= 0) {
    tmp.resize(x.state_len);
    StateStore::Ticket t = opt_.store->read(x.sid[a], 0, x.state_len, tmp.data());
    wait_io(t);
    return tmp.data();
  }
  switch (a) {
    case kParams:
      ZT_CHECK(!lowp(), "16-bit parameters are not fp32 state");
      return reinterpret_cast<const float*>(opt_.stage == 3 ? x.pshard.data() : x.pfull.data());
    case kMaster: return x.master.data();
    case kMomentM: return x.m.data();
    default: return x.v.data();
  }
}

void ZeroEngine::wait_io(StateStore::Ticket& t) {
  const double t0 = now_ms();
  t.get();  // rethrows the store's error
  const double ms = now_ms() - t0;
  io_wait_ms_ += ms;
  if (ms > 0.01 && Tracer::get().on())
    Tracer::get().span("io wait", TraceTrack::compute, t0, t0 + ms);
}

void ZeroEngine::fetch(int u) {
  Unit& x = *units_[u];
  if (x.sid[kParams] < 0 || x.fetching || x.pshard.size()) return;
  const int64_t bytes = x.lay.shard() * (int64_t)dtype_size(opt_.precision);
  x.pshard.reset(bytes, MemCategory::params);
  params_resident_ += bytes;
  x.fetch = opt_.store->read(x.sid[kParams], 0, x.lay.shard(), x.pshard.data());
  x.fetching = true;
}

void ZeroEngine::read_ahead(int u) {
  Unit& x = *units_[u];
  if (x.sid[kParams] < 0 || x.gather_issued || x.pshard.size()) return;
  const int64_t bytes = x.lay.shard() * (int64_t)dtype_size(opt_.precision);
  if (params_resident_ + bytes <= shard_budget_) fetch(u);
}

void ZeroEngine::drop_shard(int u) {
  Unit& x = *units_[u];
  if (x.sid[kParams] < 0 || x.pshard.size() == 0) return;
  if (x.fetching) x.fetch.wait();  // an unused read ahead: its error does not matter now
  x.fetching = false;
  params_resident_ -= (int64_t)x.pshard.size();
  x.pshard.reset(0, MemCategory::params);
}

void ZeroEngine::drop_all_shards() {
  for (int u = 0; u <= last_unit(); ++u) drop_shard(u);
}

namespace {
struct Tile {
  int u;
  int64_t j0, j1;
};
// Never leave a staging buffer with I/O in flight when the step ends, by error or not.
struct DrainSlots {
  std::vector<ZeroEngine::StagingSlot>& slots;
  ~DrainSlots() {
    for (auto& s : slots) {
      for (auto& t : s.reads) t.wait();
      for (auto& t : s.writes) t.wait();
      s.reads.clear();
      s.writes.clear();
    }
  }
};
}  // namespace

void ZeroEngine::run_updates(const std::vector<const float*>& grads, AdamWOptions ao, double lr,
                             const AdamWConfig& adamw, int64_t step) {
  const DType cdt = opt_.precision;
  auto esize = [&](int a) { return a == kParams ? (int64_t)dtype_size(cdt) : 4; };
  bool staged[kStateArrays] = {};         // by the units this rank holds (a middle pipeline stage
  for (int a = 0; a < kStateArrays; ++a)  // has no embedding)
    for (const auto& x : units_) staged[a] = staged[a] || x->sid[a] >= 0;
  const bool streamed = tile_ > 0;
  std::vector<Tile> tiles;
  for (int u = 0; u <= last_unit(); ++u) {
    const int64_t len = units_[u]->state_len, t = streamed ? tile_ : len;
    for (int64_t j0 = 0; j0 < len; j0 += t) tiles.push_back({u, j0, std::min(len, j0 + t)});
  }
  if (streamed && slots_.empty()) {
    slots_.resize(kSlots);
    for (StagingSlot& s : slots_)
      for (int a = 0; a < kStateArrays; ++a)
        if (staged[a])
          s.buf[a].reset(tile_ * esize(a), a == kParams ? MemCategory::params : MemCategory::optim);
  }
  std::vector<StagingSlot>& slots = slots_;
  DrainSlots drain{slots};

  // Where element j (shard side) / b (unit buffer) of array a is for tile t in slot s.
  auto ptr = [&](Unit& x, int a, StagingSlot* s, const Tile& t, int64_t j, int64_t b) -> void* {
    if (staged[a]) return s->buf[a].data() + (j - t.j0) * esize(a);
    switch (a) {
      case kParams:
        return opt_.stage == 3 ? x.pshard.data() + j * esize(a) : x.pfull.data() + b * esize(a);
      case kMaster: return x.master.data() + j;
      case kMomentM: return x.m.data() + j;
      default: return x.v.data() + j;
    }
  };
  auto load = [&](size_t i) {  // reuse slot i % kSlots for tile i once its writes are done
    StagingSlot& s = slots[i % kSlots];
    for (auto& w : s.writes) wait_io(w);
    s.writes.clear();
    const Tile& t = tiles[i];
    Unit& x = *units_[t.u];
    for (int a = 0; a < kStateArrays; ++a) {
      if (!staged[a]) continue;
      if (a == kParams && lowp()) {  // 16-bit output only: rewritten whole, padding stays 0
        std::memset(s.buf[a].data(), 0, (t.j1 - t.j0) * esize(a));
        continue;
      }
      s.reads.push_back(opt_.store->read(x.sid[a], t.j0, t.j1 - t.j0, s.buf[a].data()));
    }
  };
  const size_t ahead = kSlots - 2;
  for (size_t i = 0; streamed && i < std::min(ahead, tiles.size()); ++i) load(i);
  for (size_t i = 0; i < tiles.size(); ++i) {
    const Tile& t = tiles[i];
    Unit& x = *units_[t.u];
    StagingSlot* s = nullptr;
    if (streamed) {
      if (i + ahead < tiles.size()) load(i + ahead);
      s = &slots[i % kSlots];
      for (auto& rd : s->reads) wait_io(rd);
      s->reads.clear();
    }
    for (const UpdateRegion& r : x.regions) {
      const int64_t j = std::max(r.j, t.j0), e = std::min(r.j + r.len, t.j1);
      if (e <= j) continue;
      const int64_t b = r.b + (j - r.j);
      float* p;
      ao.p16 = nullptr;
      if (lowp()) {
        p = static_cast<float*>(ptr(x, kMaster, s, t, j, b));
        ao.p16 = static_cast<uint16_t*>(ptr(x, kParams, s, t, j, b));
      } else {
        p = static_cast<float*>(ptr(x, kParams, s, t, j, b));
      }
      adamw_step_simd(p, static_cast<float*>(ptr(x, kMomentM, s, t, j, b)),
                      static_cast<float*>(ptr(x, kMomentV, s, t, j, b)), grads[t.u] + j, e - j,
                      step, (float)(lr * r.lr_scale), adamw, r.decay, ao);
    }
    if (streamed)
      for (int a = 0; a < kStateArrays; ++a)
        if (staged[a])
          s->writes.push_back(opt_.store->write(x.sid[a], t.j0, t.j1 - t.j0, s->buf[a].data()));
  }
  for (StagingSlot& s : slots) {
    for (auto& w : s.writes) wait_io(w);
    s.writes.clear();
  }
}

}  // namespace zt
