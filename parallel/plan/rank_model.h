// rank_model.h: one rank of a layout as the runtime builds it, without building anything: its
// grid coordinates, its slice of the parameter table, the units its pipeline stage holds, and its
// ZeRO plan (the planner's view of train_setup.cpp).
#pragma once
#include <vector>

#include "model/params.h"
#include "parallel/grid.h"
#include "parallel/pipeline/stages.h"
#include "parallel/plan/layout_plan.h"
#include "parallel/zero/plan.h"

namespace zt {

struct RankModel {
  GridLayout grid;
  GridCoord at;
  ParamTable table;         // the rank's tensor and expert slice
  std::vector<bool> owned;  // the units of its pipeline stage (all with pp = 1)
  PipelineLayout pipe;      // pp > 1
  ZeroOptions zero;
  ZeroPlan plan;
  std::vector<int> chunks;        // virtual stages of its pipeline stage (pp = 1: {0})
  std::vector<PipeChunk> pieces;  // what each of them holds (pp = 1: the whole model)
};

RankModel rank_model(const PlanLayout& l, const PlanRun& run, int rank);
// The same rank with nothing offloaded: the state an offloaded layout moves out of memory.
RankModel resident_rank_model(const PlanLayout& l, const PlanRun& run, int rank);

// The ranks whose sizes differ: one per pipeline stage (tp, dp and ep ranks hold equal shares:
// tp divides every split size, ZeRO pads its shards, every ep rank holds experts / ep experts).
std::vector<int> distinct_ranks(const PlanLayout& l);

}  // namespace zt
