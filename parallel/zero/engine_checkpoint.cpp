// engine_checkpoint.cpp: what a checkpoint writer needs from the engine, one unit at a time:
// this rank's even piece of every parameter (runtime/split.h, even_piece) of the fp32 master and
// both moments. Sharded arrays are redistributed with one all_to_all each, so a rank receives
// about 1/N of the unit instead of all of it; arrays every rank holds whole are copied locally.
#include <algorithm>

#include "parallel/zero/engine.h"
#include "parallel/zero/engine_unit.h"
#include "runtime/error.h"
#include "runtime/split.h"

namespace zt {

void ZeroEngine::checkpoint_pieces(int u, std::vector<float>& params, std::vector<float>& m,
                                   std::vector<float>& v) {
  drop_all_shards();
  Unit& x = *units_[u];
  const UnitLayout& l = x.lay;
  const int n = dp_.size(), me = dp_.rank();
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
  for (auto [a, dst] : {std::pair{lowp() ? kMaster : kParams, &params}, std::pair{kMomentM, &m},
                        std::pair{kMomentV, &v}}) {
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
    dp_.all_to_all(send.data(), send_counts, recv.data(), recv_counts, DType::fp32).wait();
    size_t pos = 0;  // the blocks arrive in rank order, each in the order its sender packed them
    for (int s = 0; s < n; ++s)
      for (const Range& r : mine)
        owned(r, s, [&](int64_t lo, int64_t hi, int64_t) {
          std::copy(recv.begin() + pos, recv.begin() + pos + (hi - lo),
                    dst->begin() + r.out + (lo - r.begin));
          pos += (size_t)(hi - lo);
        });
  }
}

}  // namespace zt
