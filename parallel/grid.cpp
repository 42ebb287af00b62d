// grid.cpp: layout arithmetic, validation, and the communicators of the grid.
#include "parallel/grid.h"

#include "runtime/error.h"

namespace zt {

const char* group_kind_name(GroupKind g) {
  static const char* names[] = {"world", "tp", "dp", "pp", "ep", "edp", "embed"};
  return names[(int)g];
}

GridCoord GridLayout::coord(int rank) const {
  GridCoord c;
  c.tp = rank % tp;
  c.dp = (rank / tp) % dp;
  c.pp = rank / (tp * dp);
  c.ep = c.dp % ep;
  c.edp = c.dp / ep;
  return c;
}

int GridLayout::group_size(GroupKind g) const {
  switch (g) {
    case GroupKind::world: return world;
    case GroupKind::tp: return tp;
    case GroupKind::dp: return dp;
    case GroupKind::pp: return pp;
    case GroupKind::ep: return ep;
    case GroupKind::edp: return edp();
    case GroupKind::embed: return pp > 1 ? 2 : 1;  // the first and last stages' groups
    case GroupKind::count: break;
  }
  return 0;
}

std::vector<int> GridLayout::group_ranks(GroupKind g, int rank) const {
  GridCoord c = coord(rank);
  std::vector<int> out;
  switch (g) {
    case GroupKind::world:
      for (int r = 0; r < world; ++r) out.push_back(r);
      break;
    case GroupKind::tp:
      for (int i = 0; i < tp; ++i) out.push_back(rank_of(i, c.dp, c.pp));
      break;
    case GroupKind::dp:
      for (int i = 0; i < dp; ++i) out.push_back(rank_of(c.tp, i, c.pp));
      break;
    case GroupKind::pp:
      for (int i = 0; i < pp; ++i) out.push_back(rank_of(c.tp, c.dp, i));
      break;
    case GroupKind::ep:  // dp indices (dp_i / ep) * ep + 0..ep-1
      for (int i = 0; i < ep; ++i) out.push_back(rank_of(c.tp, c.edp * ep + i, c.pp));
      break;
    case GroupKind::edp:  // dp indices with the same dp_i % ep
      for (int i = 0; i < edp(); ++i) out.push_back(rank_of(c.tp, i * ep + c.ep, c.pp));
      break;
    case GroupKind::embed:
      if (pp > 1 && (c.pp == 0 || c.pp == pp - 1)) {
        out.push_back(rank_of(c.tp, c.dp, 0));
        out.push_back(rank_of(c.tp, c.dp, pp - 1));
      } else {
        out.push_back(rank);
      }
      break;
    case GroupKind::count: break;
  }
  return out;
}

int GridLayout::group_rank(GroupKind g, int rank) const {
  GridCoord c = coord(rank);
  switch (g) {
    case GroupKind::world: return rank;
    case GroupKind::tp: return c.tp;
    case GroupKind::dp: return c.dp;
    case GroupKind::pp: return c.pp;
    case GroupKind::ep: return c.ep;
    case GroupKind::edp: return c.edp;
    case GroupKind::embed: return pp > 1 && c.pp == pp - 1 ? 1 : 0;
    case GroupKind::count: break;
  }
  return 0;
}

int GridLayout::group_id(GroupKind g, int rank) const {
  GridCoord c = coord(rank);
  switch (g) {
    case GroupKind::world: return 0;
    case GroupKind::tp: return c.dp + dp * c.pp;
    case GroupKind::dp: return c.tp + tp * c.pp;
    case GroupKind::pp: return c.tp + tp * c.dp;
    case GroupKind::ep: return c.tp + tp * (c.edp + edp() * c.pp);
    case GroupKind::edp: return c.tp + tp * (c.ep + ep * c.pp);
    case GroupKind::embed:  // the pair's (tp_i, dp_i); every other rank alone
      return pp > 1 && (c.pp == 0 || c.pp == pp - 1) ? c.tp + tp * c.dp : world + rank;
    case GroupKind::count: break;
  }
  return 0;
}

std::string layout_error(int world, int tp, int pp, int ep, int experts) {
  if (world < 1) return cat("the world size must be >= 1 (got ", world, ")");
  if (tp < 1) return cat("--tp must be >= 1 (got ", tp, ")");
  if (pp < 1) return cat("--pp must be >= 1 (got ", pp, ")");
  if (ep < 1) return cat("--ep must be >= 1 (got ", ep, ")");
  if (world % (tp * pp) != 0)
    return cat("--tp ", tp, " x --pp ", pp, " = ", tp * pp, " does not divide the ", world,
               " ranks (data-parallel size = ranks / (tp x pp) must be whole)");
  int dp = world / (tp * pp);
  if (ep > 1 && experts == 0) return cat("--ep ", ep, " needs an MoE model (--experts > 0)");
  if (experts > 0 && experts % ep != 0)
    return cat("--ep ", ep, " does not divide --experts ", experts);
  if (dp % ep != 0)
    return cat("--ep ", ep, " does not divide the data-parallel size ", dp, " (= ", world,
               " ranks / (tp ", tp, " x pp ", pp, "))");
  return "";
}

GridLayout make_layout(int world, int tp, int pp, int ep, int experts) {
  std::string err = layout_error(world, tp, pp, ep, experts);
  if (!err.empty()) fail(err);
  GridLayout l;
  l.world = world, l.tp = tp, l.pp = pp, l.ep = ep, l.dp = world / (tp * pp);
  return l;
}

GridLayout validate_layout(const ProcessInfo& info, int tp, int pp, int ep, int experts) {
  std::string err = layout_error(info.world, tp, pp, ep, experts);
  if (!err.empty()) fail_on_rank0(info, err);
  return make_layout(info.world, tp, pp, ep, experts);
}

ProcessGrid::ProcessGrid(Communicator& world, int tp, int pp, int ep)
    : world_(world), layout_(make_layout(world.size(), tp, pp, ep)) {
  int r = world.rank();
  coord_ = layout_.coord(r);
  for (int g = 1; g < (int)GroupKind::count; ++g) {
    auto kind = (GroupKind)g;
    // Every rank takes part in every split, in the same order.
    groups_[g] =
        world.split(layout_.group_id(kind, r), layout_.group_rank(kind, r), group_kind_name(kind));
    ZT_CHECK(groups_[g]->size() == (int)layout_.group_ranks(kind, r).size() &&
                 groups_[g]->rank() == layout_.group_rank(kind, r),
             group_kind_name(kind), " group: size ", groups_[g]->size(), " rank ",
             groups_[g]->rank());
  }
}

Communicator& ProcessGrid::group(GroupKind g) {
  if (g == GroupKind::world) return world_;
  return *groups_[(int)g];
}

}  // namespace zt
