// plan.cpp: the ZeRO layout of one rank (plan.h).
#include "parallel/zero/plan.h"

#include <algorithm>

#include "runtime/error.h"

namespace zt {

ZeroPlan plan_zero(const ParamTable& t, const GridLayout& grid, int rank, const ZeroOptions& opt,
                   const std::vector<bool>& owned) {
  ZT_CHECK(opt.stage >= 0 && opt.stage <= 3, "zero stage ", opt.stage);
  ZeroPlan plan;
  const int64_t es = (int64_t)dtype_size(opt.precision);
  const bool lowp = opt.precision != DType::fp32;
  const int64_t bucket = std::max<int64_t>(1, (int64_t)(opt.bucket_mb * (1 << 20) / es));
  for (int u = 0; u < t.num_units(); ++u) {
    ZeroUnitPlan x;
    x.group = t.units[u].kind == UnitKind::experts ? GroupKind::edp : GroupKind::dp;
    x.group_rank = grid.group_rank(x.group, rank);
    const int n = grid.group_size(x.group), r = x.group_rank;
    const bool held = owned.empty() || owned[u];
    x.lay = make_unit_layout(held ? t.unit_numel(u) : 0, n, bucket);
    const UnitLayout& l = x.lay;
    x.state_len = opt.stage == 0 ? l.padded() : l.shard();
    const GridCoord at = grid.coord(rank);
    const bool replica = t.units[u].kind == UnitKind::embed && at.pp != 0;
    const bool owner = held && !replica && (opt.stage > 0 || r == 0), tp_root = at.tp == 0;
    for (int c = 0; c < (opt.stage == 0 ? 1 : l.chunks()); ++c) {
      const int64_t pb = opt.stage == 0 ? 0 : l.piece_begin(c, r);
      const int64_t pe = opt.stage == 0 ? l.padded() : pb + l.piece(c);
      const int64_t sb = opt.stage == 0 ? 0 : l.shard_begin(c);
      for (const ParamSpec& p : t.params) {
        if (p.unit != u || !held) continue;
        const int64_t b = std::max(pb, p.offset), e = std::min(pe, p.offset + p.numel);
        const bool norm = owner && (p.numel != p.full_numel || tp_root);
        if (e > b) x.regions.push_back({sb + (b - pb), b, e - b, p.decay, norm});
      }
    }
    int counted = 0;
    for (const UpdateRegion& g : x.regions) counted += g.norm;
    x.norm = !owner                             ? NormPart::none
             : counted == (int)x.regions.size() ? NormPart::all
                                                : NormPart::regions;
    // What the engine allocates for the unit (engine.cpp, the constructor).
    ZeroBytes& z = plan.bytes;
    if (opt.stage < 3)
      z.params += l.padded() * es;
    else if (!opt.params_in_store)
      z.params += l.shard() * es;
    const int64_t state = opt.optim_in_store ? 0 : x.state_len * 4;
    z.optim += (lowp ? 3 : 2) * state;  // 16-bit runs: the fp32 master too
    if (opt.stage <= 1) z.grads += l.padded() * (lowp ? es : 4);
    if (opt.stage == 1) z.grads += l.shard() * es;
    if (opt.stage >= 2) z.grads += l.shard() * 4;
    plan.units.push_back(std::move(x));
  }
  return plan;
}

}  // namespace zt
