// plan.h: where ZeRO puts every unit's state on one rank, as a pure function of the parameter
// table, the grid and the options: which group partitions each unit, its chunked shard layout
// (layout.h), what the optimizer updates, and the model-state bytes the rank holds. The engine
// allocates by it; a planner can price a layout with it without running anything.
//
// A unit is partitioned over the data-parallel group of its kind: dense units over dp, the routed
// experts over edp, the dp / ep ranks that hold the same experts (SPEC section 6; with ep = 1 the
// same ranks as dp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/params.h"
#include "parallel/grid.h"
#include "parallel/zero/layout.h"
#include "parallel/zero/state_store.h"
#include "runtime/dtype.h"

namespace zt {

struct ZeroOptions {
  int stage = 0;
  DType precision = DType::fp32;      // fp32 | bf16 | fp16
  double initial_loss_scale = 65536;  // fp16 only
  int growth_interval = 1000;         // fp16: good steps before the scale doubles
  bool overlap = true;                // issue collectives early and wait late; off: wait at once
  double bucket_mb = 25;              // chunk size of the collectives
  int prefetch = 1;                   // stage 3: units gathered ahead of the one computing
  // Offload to a store (not owned; it must outlive the engine).
  StateStore* store = nullptr;
  bool optim_in_store = false;   // fp32 master (16-bit runs) and both AdamW moments
  bool params_in_store = false;  // stage 3: this rank's parameter shards
  int64_t store_buffer_bytes = int64_t(256) << 20;  // most of them resident at once
};

// Elements [b, b + len) of the unit (padded buffer index), stored from index j of the arrays the
// optimizer updates (stage 0: j = b; else the rank's shard). One per (chunk piece x parameter).
struct UpdateRegion {
  int64_t j, b, len;
  bool decay;
  bool norm = true;    // counts in the gradient norm on this rank
  float lr_scale = 1;  // the parameter's lr multiplier (QAT step sizes: 1 / qp)
};

// Which of this rank's part of a unit counts in the gradient norm, where every element must count
// once over the world: a stage-0 unit only on rank 0 of its group (every rank holds all of it), a
// parameter tensor parallelism does not split only on tp rank 0 (every tp rank holds it), the
// embedding only on the first pipeline stage (the last holds a replica for a tied head).
enum class NormPart : uint8_t { all, none, regions };

struct ZeroUnitPlan {
  GroupKind group = GroupKind::dp;  // the ranks that partition this unit
  int group_rank = 0;
  UnitLayout lay;
  int64_t state_len = 0;  // elements of master / m / v: stage 0 the padded unit, else the shard
  std::vector<UpdateRegion> regions;  // in increasing j
  NormPart norm = NormPart::all;      // regions: those with UpdateRegion::norm
};

// Resident model-state bytes on the rank, by allocator category (state kept in a StateStore is
// not resident). The ZeRO paper's 16 / 4 + 12 / 2 + 14 / 16 bytes per parameter, over N.
struct ZeroBytes {
  int64_t params = 0, grads = 0, optim = 0;
  int64_t total() const { return params + grads + optim; }
};

// Offload (state in a StateStore): the optimizer step streams the state kept in the store through
// kStagingSlots tiles of `tile` elements per stored array, kept from step to step (params /
// optim bytes); parameter shards in flight for their all-gathers share the rest of the buffer
// (ZeroOptions::store_buffer_bytes).
constexpr int kStagingSlots = 4;  // tiles in flight: computing, writing, and two being read
struct StagingPlan {
  int64_t tile = 0;          // elements per staged tile (0: nothing in the store)
  int64_t shard_budget = 0;  // bytes of the buffer left to parameter shards
  int64_t params_bytes = 0, optim_bytes = 0;
  std::string error;  // why the buffer is too small (naming --nvme-buffer-mb), "" if it is not
};

struct ZeroPlan {
  std::vector<ZeroUnitPlan> units;
  ZeroBytes bytes;  // with the staging tiles
  StagingPlan staging;
};

// `owned`: the units this rank holds ([units], empty: all); the others get no state. The
// embedding's replica on the last pipeline stage (a tied head) is not counted in the norm.
ZeroPlan plan_zero(const ParamTable& table, const GridLayout& grid, int rank,
                   const ZeroOptions& opt, const std::vector<bool>& owned = {});

}  // namespace zt
