// engine_state.cpp: the engine's state in and out, one unit at a time: assembled whole, as the
// pieces a checkpoint writer needs, and loaded back on resume.
//
// checkpoint_pieces: this rank's even piece of every parameter (runtime/split.h, even_piece) of
// the fp32 master and both moments. Sharded arrays are redistributed with one all_to_all each, so
// a rank receives about 1/N of the unit instead of all of it; arrays every rank holds whole are
// copied locally.
#include <algorithm>

#include "parallel/zero/engine.h"
#include "parallel/zero/engine_unit.h"
#include "runtime/convert.h"
#include "runtime/error.h"
#include "runtime/split.h"

namespace zt {

PieceSplit ZeroEngine::checkpoint_pieces(int u, std::vector<float>& params, std::vector<float>& m,
                                         std::vector<float>& v) {
  drop_all_shards();
  Unit& x = *units_[u];
  const UnitLayout& l = x.lay;
  const int n = x.comm->size(), me = x.rank;
  struct Range {
    int64_t begin, len, out;  // unit elements [begin, begin + len) at output position `out`
  };
  auto wants = [&](int rank) {  // the even pieces rank `rank` writes, in table order
    std::vector<Range> w;
    int64_t out = 0;
    for (const ParamSpec& t : model_.table.params) {
      if (t.unit != u) continue;
      const auto [off, len] = even_piece(t.numel, n, rank);
      if (len > 0) w.push_back({t.offset + off, len, out});
      out += len;
    }
    return w;
  };
  const std::vector<Range> mine = wants(me);
  const int64_t total = mine.empty() ? 0 : mine.back().out + mine.back().len;
  // Calls f(lo, hi, j) for the part [lo, hi) of range r that rank `owner` holds, j = its shard
  // index of lo, in chunk order.
  auto owned = [&](const Range& r, int owner, auto&& f) {
    for (int c = 0; c < l.chunks(); ++c) {
      const int64_t pb = l.piece_begin(c, owner);
      const int64_t lo = std::max(r.begin, pb), hi = std::min(r.begin + r.len, pb + l.piece(c));
      if (hi > lo) f(lo, hi, l.shard_begin(c) + (lo - pb));
    }
  };
  std::vector<float> tmp, send, recv;
  const bool master_full = lowp() ? opt_.stage == 0 : opt_.stage < 3;
  for (auto [a, out] : {std::pair{lowp() ? kMaster : kParams, &params}, std::pair{kMomentM, &m},
                        std::pair{kMomentV, &v}}) {
    std::vector<float>* dst = out;  // a plain variable: lambdas below capture it (clang 14)
    const float* src = f32_state(x, a, tmp);
    dst->assign(total, 0.0f);
    if (a == kMaster || a == kParams ? master_full : opt_.stage == 0) {  // whole on every rank
      for (const Range& r : mine)
        std::copy(src + r.begin, src + r.begin + r.len, dst->data() + r.out);
      continue;
    }
    std::vector<size_t> send_counts(n, 0), recv_counts(n, 0);
    send.clear();
    for (int d = 0; d < n; ++d)
      for (const Range& r : wants(d))
        owned(r, me, [&](int64_t lo, int64_t hi, int64_t j) {
          send.insert(send.end(), src + j, src + j + (hi - lo));
          send_counts[d] += (size_t)(hi - lo);
        });
    for (int s = 0; s < n; ++s)
      for (const Range& r : mine)
        owned(r, s, [&](int64_t lo, int64_t hi, int64_t) { recv_counts[s] += (size_t)(hi - lo); });
    size_t recv_total = 0;
    for (size_t c : recv_counts) recv_total += c;
    ZT_CHECK((int64_t)recv_total == total, "unit ", u, ": ", recv_total, " of ", total,
             " elements");
    recv.resize(recv_total);
    send.resize(std::max<size_t>(send.size(), 1));  // never hand a null buffer over
    recv.resize(std::max<size_t>(recv.size(), 1));
    x.comm->all_to_all(send.data(), send_counts, recv.data(), recv_counts, DType::fp32).wait();
    size_t pos = 0;  // the blocks arrive in rank order, each in the order its sender packed them
    for (int s = 0; s < n; ++s)
      for (const Range& r : mine)
        owned(r, s, [&](int64_t lo, int64_t hi, int64_t) {
          std::copy(recv.begin() + pos, recv.begin() + pos + (hi - lo),
                    dst->begin() + r.out + (lo - r.begin));
          pos += (size_t)(hi - lo);
        });
  }
  return {n, me};
}

namespace {
// Assembles a sharded fp32 buffer (layout l, this rank's shard `part`) into `out` (numel).
void gather_shards(Communicator& dp, const UnitLayout& l, const float* part,
                   std::vector<float>& out) {
  std::vector<float> full(l.padded());
  std::vector<Work> ws;
  for (int c = 0; c < l.chunks(); ++c)
    ws.push_back(dp.all_gather(part + l.shard_begin(c), full.data() + l.begin[c], l.chunk_len(c),
                               DType::fp32));
  for (Work& w : ws) w.wait();
  out.assign(full.begin(), full.begin() + l.numel);
}
std::vector<float> take_shard(const UnitLayout& l, int r, const std::vector<float>& full) {
  std::vector<float> part(l.shard(), 0.0f);
  for (int c = 0; c < l.chunks(); ++c) {
    const int64_t b = l.piece_begin(c, r), e = std::min(b + l.piece(c), l.numel);
    if (e > b) std::copy(full.begin() + b, full.begin() + e, part.begin() + l.shard_begin(c));
  }
  return part;
}
}  // namespace

void ZeroEngine::gather_unit_state(int u, std::vector<float>& params, std::vector<float>* m,
                                   std::vector<float>* v) {
  drop_all_shards();
  Unit& x = *units_[u];
  const UnitLayout& l = x.lay;
  std::vector<float> tmp;
  // The fp32 master: the 16-bit runs' master buffer, else the fp32 parameters themselves.
  const float* master = lowp() ? f32_state(x, kMaster, tmp) : f32_state(x, kParams, tmp);
  const bool master_full = lowp() ? opt_.stage == 0 : opt_.stage < 3;
  if (master_full)
    params.assign(master, master + l.numel);
  else
    gather_shards(*x.comm, l, master, params);
  for (auto [dst, a] : {std::pair{m, kMomentM}, std::pair{v, kMomentV}}) {
    if (!dst) continue;
    const float* src = f32_state(x, a, tmp);
    if (opt_.stage == 0)
      dst->assign(src, src + l.numel);
    else
      gather_shards(*x.comm, l, src, *dst);
  }
}

void ZeroEngine::load_unit_state(int u, const std::vector<float>& logical_params,
                                 const std::vector<float>* logical_m,
                                 const std::vector<float>* logical_v) {
  drop_all_shards();
  const DType cdt = opt_.precision;
  Unit& x = *units_[u];
  const int r = x.rank;
  const UnitLayout& l = x.lay;
  const ParamTable& t = model_.table;
  // This rank's tensor-parallel slice of the logical unit, in the unit's own layout.
  auto local = [&](const std::vector<float>& logical) {
    ZT_CHECK((int64_t)logical.size() == t.units[u].full_numel, "unit ", u, " size ",
             logical.size());
    std::vector<float> out(l.numel);
    for (const ParamSpec& p : t.params)
      if (p.unit == u) copy_slice(p, logical.data(), out.data());
    return out;
  };
  const std::vector<float> params = local(logical_params);
  std::vector<float> m_local, v_local;
  if (logical_m) m_local = local(*logical_m);
  if (logical_v) v_local = local(*logical_v);
  const std::vector<float>* m = logical_m ? &m_local : nullptr;
  const std::vector<float>* v = logical_v ? &v_local : nullptr;
  // What this rank keeps of a full fp32 unit array: stage 0 all of it (padded), else its shard.
  auto state_part = [&](const std::vector<float>& full) {
    if (opt_.stage > 0) return take_shard(l, r, full);
    std::vector<float> padded(full);
    padded.resize(l.padded(), 0.0f);
    return padded;
  };
  if (opt_.stage < 3) {
    std::vector<float> full(params);
    full.resize(l.padded(), 0.0f);
    f32_to(x.pfull.data(), cdt, full.data(), l.padded());
  } else {
    std::vector<float> mine = take_shard(l, r, params);
    if (x.sid[kParams] >= 0) {
      std::vector<uint8_t> p(l.shard() * dtype_size(cdt));
      f32_to(p.data(), cdt, mine.data(), l.shard());
      store_put(x, kParams, p.data());
    } else {
      f32_to(x.pshard.data(), cdt, mine.data(), l.shard());
    }
  }
  if (lowp()) {
    std::vector<float> part = state_part(params);
    if (x.sid[kMaster] >= 0)
      store_put(x, kMaster, part.data());
    else
      std::copy(part.begin(), part.end(), x.master.data());
  }
  for (auto [src, a] : {std::pair{m, kMomentM}, std::pair{v, kMomentV}}) {
    if (!src) continue;
    ZT_CHECK((int64_t)src->size() == l.numel, "unit ", u, " moment size ", src->size());
    std::vector<float> part = state_part(*src);
    if (x.sid[a] >= 0)
      store_put(x, a, part.data());
    else
      std::copy(part.begin(), part.end(), (a == kMomentM ? x.m : x.v).data());
  }
}

}  // namespace zt
