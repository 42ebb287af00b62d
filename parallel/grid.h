// grid.h: the one process grid every communicator comes from (ARCHITECTURE rule 1).
//
// world = tp * dp * pp ranks, rank order tp fastest, then dp, then pp:
//     rank = tp_i + tp * (dp_i + dp * pp_i)
// Groups (each ordered by the coordinate that varies inside it):
//     tp   the tp ranks with the same (dp_i, pp_i)        tensor parallel
//     dp   the dp ranks with the same (tp_i, pp_i)        data parallel (ZeRO partitions here)
//     pp   the pp ranks with the same (tp_i, dp_i)        pipeline stages
//     ep   ep consecutive dp ranks: dp_i / ep fixed       expert parallel (experts split here)
//     edp  the dp / ep ranks with the same dp_i % ep      expert data parallel (same experts)
//     embed  the first and the last pipeline stage of a (tp_i, dp_i): the ranks holding the tied
//            embedding (its gradient is summed between them); a rank of any other stage, or every
//            rank when pp = 1, is a group of its own
// ep divides dp: the experts are spread over ep ranks inside each data-parallel group, and the
// ranks that hold the same experts reduce their gradients over edp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "parallel/comm/comm.h"
#include "runtime/process.h"

namespace zt {

enum class GroupKind : int { world = 0, tp, dp, pp, ep, edp, embed, count };
const char* group_kind_name(GroupKind g);

struct GridCoord {
  int tp = 0, dp = 0, pp = 0;  // coordinates
  int ep = 0, edp = 0;         // rank inside its ep group and its edp group (ep = dp % ep_size)
};

// The arithmetic of a layout, no communication: usable before MPI starts and in unit tests.
struct GridLayout {
  int world = 1, tp = 1, pp = 1, dp = 1, ep = 1;
  int edp() const { return dp / ep; }

  GridCoord coord(int rank) const;
  int rank_of(int tp_i, int dp_i, int pp_i) const { return tp_i + tp * (dp_i + dp * pp_i); }
  int group_size(GroupKind g) const;  // the size of every group of kind g (not embed)
  // The world ranks of `rank`'s group of kind g, in group-rank order; `rank` is at group_rank().
  std::vector<int> group_ranks(GroupKind g, int rank) const;
  int group_rank(GroupKind g, int rank) const;
  int group_id(GroupKind g,
               int rank) const;  // equal for the members of one group, distinct otherwise
};

// Why (world, tp, pp, ep) cannot run a model with `experts` experts (0 = dense; -1 = not known,
// model checks skipped), as one line naming the flag, e.g. "--ep 3 does not divide --experts 8";
// "" when it can. Checks tp, pp, ep >= 1, tp * pp divides world, ep divides experts and dp, ep > 1
// only for MoE models. (Whether tp fits the model's sizes: model/params.h, tensor_slice_error.)
std::string layout_error(int world, int tp, int pp, int ep, int experts);
// The layout, or zt::Error with layout_error's line.
GridLayout make_layout(int world, int tp, int pp, int ep, int experts = -1);
// For `train`, before any allocation and before MPI starts: the layout when it is valid; else
// rank 0 raises the line as zt::Error (exit status 2) and every other rank exits 2 silently.
GridLayout validate_layout(const ProcessInfo& info, int tp, int pp, int ep, int experts);

class ProcessGrid {
 public:
  // Collective over `world` (every rank calls it, same arguments). Splits the world into the
  // groups above; a group of one rank is a local communicator (no messages).
  ProcessGrid(Communicator& world, int tp, int pp, int ep);

  const GridLayout& layout() const { return layout_; }
  const GridCoord& coord() const { return coord_; }
  int rank() const { return world_.rank(); }

  Communicator& world() { return world_; }
  Communicator& tp() { return group(GroupKind::tp); }
  Communicator& dp() { return group(GroupKind::dp); }
  Communicator& pp() { return group(GroupKind::pp); }
  Communicator& ep() { return group(GroupKind::ep); }
  Communicator& edp() { return group(GroupKind::edp); }
  Communicator& embed() { return group(GroupKind::embed); }
  Communicator& group(GroupKind g);

 private:
  Communicator& world_;
  GridLayout layout_;
  GridCoord coord_;
  std::unique_ptr<Communicator> groups_[(int)GroupKind::count];
};

}  // namespace zt
