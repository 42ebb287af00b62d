// rank_model.cpp: one rank of a layout (rank_model.h).
#include "parallel/plan/rank_model.h"

namespace zt {

RankModel rank_model(const PlanLayout& l, const PlanRun& run, int rank) {
  RankModel r;
  const ModelConfig& m = run.model;
  r.grid = make_layout(l.dp * l.tp * l.pp, l.tp, l.pp, l.ep, m.experts);
  r.at = r.grid.coord(rank);
  const TensorSlice slice{l.tp, r.at.tp};
  r.table = build_param_table(m, slice, ExpertSlice{l.ep, r.at.ep});
  if (l.pp > 1) {
    r.pipe = make_pipeline_layout(m, l.pp, l.virtual_stages);
    r.owned = stage_units(r.pipe, build_param_table(m, slice), m, r.at.pp);
    for (int c = 0; c < l.virtual_stages; ++c) r.chunks.push_back(c * l.pp + r.at.pp);
    for (int v : r.chunks) r.pieces.push_back(r.pipe.virt[v]);
  } else {
    r.chunks = {0};
    r.pieces = {{0, m.layers, true, true}};
  }
  r.zero.stage = l.zero_stage;
  r.zero.precision = run.precision;
  r.zero.bucket_mb = run.bucket_mb;
  r.zero.prefetch = run.prefetch;
  r.zero.optim_in_store = l.offload_optimizer == "nvme";  // cpu: train_setup.cpp, zero_options
  r.zero.params_in_store = l.offload_params == "nvme";
  r.plan = plan_zero(r.table, r.grid, rank, r.zero, r.owned);
  return r;
}

RankModel resident_rank_model(const PlanLayout& l, const PlanRun& run, int rank) {
  PlanLayout resident = l;
  resident.offload_optimizer = resident.offload_params = "none";
  return rank_model(resident, run, rank);
}

std::vector<int> distinct_ranks(const PlanLayout& l) {
  const GridLayout g{l.dp * l.tp * l.pp, l.tp, l.pp, l.dp, l.ep};
  std::vector<int> out;
  for (int s = 0; s < l.pp; ++s) out.push_back(g.rank_of(0, 0, s));
  return out;
}

}  // namespace zt
