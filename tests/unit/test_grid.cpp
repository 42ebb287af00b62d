// Process-grid arithmetic without MPI: rank order (tp fastest, then dp, then pp), group
// membership for several shapes, expert groups inside dp, and the one-line errors for invalid
// layouts; plus the shard split every backend uses.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "model/params.h"
#include "parallel/comm/comm.h"
#include "parallel/grid.h"
#include "runtime/error.h"
#include "runtime/split.h"

namespace zt {
namespace {

TEST(GridLayout, RankOrderIsTpThenDpThenPp) {
  GridLayout l = make_layout(24, 2, 3, 2);  // dp = 4
  EXPECT_EQ(l.dp, 4);
  EXPECT_EQ(l.edp(), 2);
  for (int r = 0; r < 24; ++r) {
    GridCoord c = l.coord(r);
    EXPECT_EQ(c.tp, r % 2);
    EXPECT_EQ(c.dp, (r / 2) % 4);
    EXPECT_EQ(c.pp, r / 8);
    EXPECT_EQ(l.rank_of(c.tp, c.dp, c.pp), r);
  }
  EXPECT_EQ(l.group_ranks(GroupKind::tp, 5), (std::vector<int>{4, 5}));
  EXPECT_EQ(l.group_ranks(GroupKind::dp, 5), (std::vector<int>{1, 3, 5, 7}));
  EXPECT_EQ(l.group_ranks(GroupKind::pp, 5), (std::vector<int>{5, 13, 21}));
  // ep = 2 consecutive dp ranks; edp = the dp ranks holding the same experts.
  EXPECT_EQ(l.group_ranks(GroupKind::ep, 5), (std::vector<int>{5, 7}));
  EXPECT_EQ(l.group_ranks(GroupKind::edp, 5), (std::vector<int>{1, 5}));
  EXPECT_EQ(l.group_rank(GroupKind::dp, 5), 2);
  EXPECT_EQ(l.group_rank(GroupKind::ep, 5), 0);
  EXPECT_EQ(l.group_rank(GroupKind::edp, 5), 1);
  // embed: the first and last stage of the same (tp, dp) hold the tied embedding
  EXPECT_EQ(l.group_ranks(GroupKind::embed, 5), (std::vector<int>{5, 21}));
  EXPECT_EQ(l.group_ranks(GroupKind::embed, 21), (std::vector<int>{5, 21}));
  EXPECT_EQ(l.group_rank(GroupKind::embed, 21), 1);
  EXPECT_EQ(l.group_ranks(GroupKind::embed, 13), (std::vector<int>{13}));
}

// For every group kind: the groups partition the world, each rank sits at group_rank() in its
// group, and group_id agrees exactly with membership.
TEST(GridLayout, GroupsPartitionTheWorldForSeveralShapes) {
  struct Shape {
    int world, tp, pp, ep;
  };
  for (Shape s : {Shape{1, 1, 1, 1}, Shape{2, 1, 1, 2}, Shape{4, 2, 1, 1}, Shape{4, 1, 2, 1},
                  Shape{8, 2, 2, 2}, Shape{12, 3, 1, 4}, Shape{16, 1, 1, 4}, Shape{12, 1, 3, 2},
                  Shape{16, 2, 4, 1}}) {
    GridLayout l = make_layout(s.world, s.tp, s.pp, s.ep);
    for (int g = 0; g < (int)GroupKind::count; ++g) {
      auto kind = (GroupKind)g;
      std::set<int> seen;
      for (int r = 0; r < s.world; ++r) {
        std::vector<int> members = l.group_ranks(kind, r);
        if (kind != GroupKind::embed) {  // embed: pairs of first and last stage, others alone
          ASSERT_EQ((int)members.size(), l.group_size(kind)) << group_kind_name(kind);
        }
        EXPECT_EQ(members[l.group_rank(kind, r)], r) << group_kind_name(kind) << " rank " << r;
        for (int m : members) {
          EXPECT_EQ(l.group_id(kind, m), l.group_id(kind, r)) << group_kind_name(kind);
          EXPECT_EQ(l.group_ranks(kind, m), members);
        }
        seen.insert(l.group_id(kind, r));
      }
      const int groups = kind == GroupKind::embed && s.pp > 2
                             ? s.world / s.pp * (s.pp - 2) + s.world / s.pp
                             : s.world / l.group_size(kind);
      EXPECT_EQ((int)seen.size(), groups) << group_kind_name(kind);
    }
  }
}

TEST(GridLayout, InvalidLayoutsGiveOneLineNamingTheFlag) {
  EXPECT_EQ(layout_error(8, 2, 2, 2, 8), "");
  EXPECT_EQ(layout_error(6, 2, 1, 1, 0), "");
  EXPECT_NE(layout_error(4, 3, 1, 1, 8).find("--tp 3 x --pp 1"), std::string::npos);
  EXPECT_NE(layout_error(6, 1, 4, 1, 8).find("does not divide the 6 ranks"), std::string::npos);
  EXPECT_EQ(layout_error(4, 1, 1, 3, 8), "--ep 3 does not divide --experts 8");
  EXPECT_NE(layout_error(4, 2, 1, 4, 8).find("--ep 4 does not divide the data-parallel size 2"),
            std::string::npos);
  EXPECT_EQ(layout_error(4, 1, 1, 2, 0), "--ep 2 needs an MoE model (--experts > 0)");
  EXPECT_EQ(layout_error(4, 0, 1, 1, 8), "--tp must be >= 1 (got 0)");
  EXPECT_EQ(layout_error(4, 1, -1, 1, 8), "--pp must be >= 1 (got -1)");
  EXPECT_EQ(layout_error(4, 1, 1, 0, 8), "--ep must be >= 1 (got 0)");
  for (const std::string& e : {layout_error(4, 3, 1, 1, 8), layout_error(4, 1, 1, 4, 8)})
    EXPECT_EQ(e.find('\n'), std::string::npos);
  EXPECT_THROW(make_layout(4, 3, 1, 1), Error);
  ProcessInfo one;  // rank 0 of 1: the error comes back as zt::Error
  EXPECT_THROW(validate_layout(one, 2, 1, 1, 8), Error);
  EXPECT_EQ(validate_layout(one, 1, 1, 1, 8).dp, 1);
}

TEST(EvenSplit, CoversTheBufferWithPartsDifferingByAtMostOne) {
  for (size_t count : {0, 1, 7, 8, 1000003})
    for (int parts : {1, 2, 3, 4, 7}) {
      auto c = even_split_counts(count, parts);
      size_t sum = 0;
      for (int i = 0; i < parts; ++i) {
        EXPECT_EQ((size_t)even_piece((int64_t)count, parts, i).off, sum);
        EXPECT_EQ(c[i], (size_t)even_piece((int64_t)count, parts, i).n);
        sum += c[i];
      }
      EXPECT_EQ(sum, count);
      auto [lo, hi] = std::minmax_element(c.begin(), c.end());
      EXPECT_LE(*hi - *lo, 1u);
    }
}

TEST(Layout, TensorSliceMustDivideTheSplitSizes) {
  ModelConfig c;  // heads 4, ffn 688, expert ffn 256, vocab 256
  EXPECT_EQ(tensor_slice_error(c, 1), "");
  EXPECT_EQ(tensor_slice_error(c, 2), "");
  EXPECT_EQ(tensor_slice_error(c, 3), "--tp 3 does not divide --heads 4");
  c.heads = 8;
  c.ffn_dim = 100;
  EXPECT_EQ(tensor_slice_error(c, 8), "--tp 8 does not divide --ffn-dim 100");
  c.ffn_dim = 64;
  c.expert_ffn_dim = 12;
  EXPECT_EQ(tensor_slice_error(c, 8), "--tp 8 does not divide --expert-ffn-dim 12");
  c.expert_ffn_dim = 16;
  c.vocab = 100;
  EXPECT_EQ(tensor_slice_error(c, 8), "--tp 8 does not divide --vocab 100");
  c.dense_layers = 0;  // no dense block: --ffn-dim does not matter
  c.vocab = 256;
  c.ffn_dim = 7;
  EXPECT_EQ(tensor_slice_error(c, 8), "");
  EXPECT_THROW(build_param_table(c, {3, 0}), Error);
}

}  // namespace
}  // namespace zt
