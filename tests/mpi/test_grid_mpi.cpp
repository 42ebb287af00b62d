// The process grid under mpirun: for every layout the world size allows, each group's
// communicator holds exactly the ranks GridLayout says, in its order; invalid layouts are refused
// on every rank alike. Rank discovery agrees with MPI.
#include <gtest/gtest.h>
#include <mpi.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "mpi_test.h"
#include "parallel/grid.h"
#include "runtime/error.h"
#include "runtime/process.h"

namespace zt::test {
namespace {

// The world ranks in `c`, gathered over `c` itself.
std::vector<int> members(Communicator& c, int world_rank) {
  std::vector<float> all(c.size());
  float mine = (float)world_rank;
  c.all_gather(&mine, all.data(), (size_t)c.size(), DType::fp32).wait();
  return std::vector<int>(all.begin(), all.end());
}

TEST(Grid, EveryLayoutOfThisWorldHasTheRightGroups) {
  int n = world().size(), r = world().rank();
  int layouts = 0;
  for (int tp = 1; tp <= n; ++tp)
    for (int pp = 1; tp * pp <= n; ++pp) {
      if (n % (tp * pp)) continue;
      int dp = n / (tp * pp);
      for (int ep = 1; ep <= dp; ++ep) {
        if (dp % ep) continue;
        ProcessGrid grid(world(), tp, pp, ep);
        const GridLayout& l = grid.layout();
        EXPECT_EQ(l.dp, dp);
        GridCoord c = grid.coord();
        EXPECT_EQ(l.rank_of(c.tp, c.dp, c.pp), r);
        for (int g = 0; g < (int)GroupKind::count; ++g) {
          auto kind = (GroupKind)g;
          Communicator& comm = grid.group(kind);
          EXPECT_EQ(comm.size(), (int)l.group_ranks(kind, r).size()) << group_kind_name(kind);
          if (kind != GroupKind::embed) {  // embed: a pair on the first and last stage, else 1
            EXPECT_EQ(comm.size(), l.group_size(kind)) << group_kind_name(kind);
          }
          EXPECT_EQ(comm.rank(), l.group_rank(kind, r)) << group_kind_name(kind);
          EXPECT_EQ(members(comm, r), l.group_ranks(kind, r))
              << group_kind_name(kind) << " group of rank " << r << " in tp " << tp << " pp " << pp
              << " ep " << ep;
        }
        // A reduction over dp sums exactly the dp ranks' values.
        float v = (float)r, sum = 0;
        grid.dp().all_reduce(&v, &sum, 1, DType::fp32, ReduceOp::sum).wait();
        float want = 0;
        for (int q : l.group_ranks(GroupKind::dp, r)) want += (float)q;
        EXPECT_EQ(sum, want);
        ++layouts;
      }
    }
  EXPECT_GE(layouts, 1);
}

TEST(Grid, InvalidLayoutsAreRefusedOnEveryRank) {
  int n = world().size();
  EXPECT_THROW(ProcessGrid(world(), n + 1, 1, 1), Error);  // tp does not divide the world
  EXPECT_THROW(ProcessGrid(world(), 1, 0, 1), Error);
  EXPECT_THROW(ProcessGrid(world(), 1, 1, n + 1), Error);  // ep does not divide dp
  world().barrier().wait();                                // nobody is left in a split
}

TEST(Process, EachRankTakesItsShareOfTheCores) {
  // Under a launcher and without OMP_NUM_THREADS a rank's OpenMP pool (which OpenBLAS shares) is
  // cores / ranks on the node, at least 1; with it, what it says (ctest: 1).
  const ProcessContext* ctx = process_context();
  ASSERT_NE(ctx, nullptr);
  if (const char* e = std::getenv("OMP_NUM_THREADS")) {
    EXPECT_EQ(omp_get_max_threads(), std::atoi(e));
    return;
  }
  if (!ctx->mpi()) GTEST_SKIP() << "one process: every core is its share";
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  const int ranks_here = world().size();  // every rank of these tests runs on this machine
  EXPECT_EQ(omp_get_max_threads(), std::max(1, CPU_COUNT(&set) / ranks_here));
}

TEST(Process, DiscoveryAgreesWithMpi) {
  const ProcessContext* ctx = process_context();
  ASSERT_NE(ctx, nullptr);
  ProcessInfo info = discover_process();
  EXPECT_EQ(info.rank, ctx->rank());
  EXPECT_EQ(info.world, ctx->world());
  EXPECT_EQ(info.world, world().size());
  EXPECT_EQ(info.rank, world().rank());
  if (const char* want = std::getenv("ZT_TEST_EXPECT_LAUNCHER")) {
    EXPECT_EQ(info.launcher, want);
  }
  if (ctx->mpi()) {
    int rank = -1, size = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    EXPECT_EQ(rank, info.rank);
    EXPECT_EQ(size, info.world);
    EXPECT_NE(info.launcher, "none");
  } else {
    EXPECT_EQ(info.world, 1);
  }
}

}  // namespace
}  // namespace zt::test
