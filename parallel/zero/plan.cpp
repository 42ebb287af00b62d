// plan.cpp: the ZeRO layout of one rank (plan.h).
#include "parallel/zero/plan.h"

#include <algorithm>
#include <cmath>

#include "runtime/error.h"

namespace zt {

namespace {

constexpr int64_t kMaxTile = int64_t(1) << 18;  // elements: enough to keep the I/O threads busy
constexpr int64_t kTileAlign = kStorePageBytes / 2;  // elements: whole pages in 16 and 32 bits
constexpr double kMB = 1 << 20;

StagingPlan plan_staging(const ZeroPlan& plan, const ZeroOptions& opt) {
  StagingPlan s;
  if (!opt.optim_in_store && !opt.params_in_store) return s;
  const int64_t es = (int64_t)dtype_size(opt.precision);
  const bool lowp = opt.precision != DType::fp32;
  int64_t max_state = 0, max_shard_bytes = 0;
  for (const ZeroUnitPlan& u : plan.units) {
    max_state = std::max(max_state, u.state_len);
    max_shard_bytes = std::max(max_shard_bytes, u.lay.shard() * es);
  }
  // Bytes per element of one staged tile: every array of a unit that lives in the store.
  int64_t bpe = opt.params_in_store ? es : 0;
  if (opt.optim_in_store) bpe += (lowp ? 3 : 2) * 4;
  // The buffer is shared: parameter shards in flight for their all-gathers (with parameter
  // offload: up to max(prefetch, 1) of the largest at once), and the staging slots.
  const int64_t budget = opt.store_buffer_bytes;
  const double budget_mb = std::round(budget / kMB * 1000) / 1000;  // as the user wrote it
  const int64_t window = opt.params_in_store ? std::max(1, opt.prefetch) * max_shard_bytes : 0;
  const int64_t min_staging = kStagingSlots * kTileAlign * bpe;
  if (window + min_staging > budget) {
    s.error =
        cat("--nvme-buffer-mb ", budget_mb, " is too small: it must hold ",
            opt.params_in_store ? cat(std::max(1, opt.prefetch), " parameter shard(s) of up to ",
                                      std::ceil(max_shard_bytes / kMB * 100) / 100,
                                      " MB (their all-gathers, --prefetch-layers) and ")
                                : std::string(),
            "the optimizer step's ", kStagingSlots, " staging tiles (at least ",
            std::ceil(min_staging / kMB * 100) / 100, " MB); use at least ",
            std::ceil((window + min_staging) / kMB * 100) / 100, " MB");
    return s;
  }
  s.tile = (budget - window) / (kStagingSlots * bpe) / kTileAlign * kTileAlign;
  s.tile = std::min({s.tile, kMaxTile, (max_state + kTileAlign - 1) / kTileAlign * kTileAlign});
  s.shard_budget = budget - kStagingSlots * s.tile * bpe;
  if (opt.params_in_store) s.params_bytes = kStagingSlots * s.tile * es;
  if (opt.optim_in_store) s.optim_bytes = kStagingSlots * s.tile * (lowp ? 3 : 2) * 4;
  return s;
}

}  // namespace

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
        if (e > b) x.regions.push_back({sb + (b - pb), b, e - b, p.decay, norm, p.lr_scale});
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
  plan.staging = plan_staging(plan, opt);
  plan.bytes.params += plan.staging.params_bytes;
  plan.bytes.optim += plan.staging.optim_bytes;
  return plan;
}

}  // namespace zt
