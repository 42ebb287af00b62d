// The pipeline schedules as pure functions (parallel/pipeline/schedule.h), no MPI: for every
// schedule, P = 1..8 stages, M = 1..16 microbatches and V = 1..4 chunks where the schedule takes
// them, every stage runs each (microbatch, chunk) forward, backward (and, zb, weight pass) exactly
// once and in that order (and each chunk's microbatches in order), every activation and gradient a
// stage waits for is produced by its neighbour (each send has its receive), the stages run to the
// end when each waits for its inputs (no deadlock), 1f1b holds at most P - stage microbatches and
// zb at most P, and the unit-time bubble is the formula's.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "parallel/pipeline/schedule.h"
#include "runtime/error.h"

namespace zt {
namespace {

using Kind = PipeScheduleKind;

void check_schedule(Kind k, int P, int M, int V) {
  const auto s = pipe_schedule(k, P, M, V);
  const std::string what = std::string(pipe_schedule_name(k)) + " P=" + std::to_string(P) +
                           " M=" + std::to_string(M) + " V=" + std::to_string(V);
  ASSERT_EQ((int)s.size(), P) << what;
  const bool split = k == Kind::zero_bubble;
  for (int st = 0; st < P; ++st) {
    std::map<std::pair<int, int>, std::string> seen;  // (micro, chunk) -> ops in order
    int held = 0, most = 0;
    std::map<std::pair<char, int>, int> last;  // (op, chunk) -> the last microbatch
    for (const PipeAction& a : s[st]) {
      ASSERT_TRUE(a.micro >= 0 && a.micro < M && a.chunk >= 0 && a.chunk < V) << what;
      seen[{a.micro, a.chunk}] += (char)a.op;
      // a chunk's forwards (and backwards) run in microbatch order: p2p messages match by order
      auto [it, fresh] = last.try_emplace({(char)a.op, a.chunk}, a.micro);
      if (!fresh) {
        EXPECT_EQ(a.micro, it->second + 1) << what << " stage " << st;
        it->second = a.micro;
      }
      held += a.op == PipeOp::F ? 1 : (a.op == (split ? PipeOp::W : PipeOp::B) ? -1 : 0);
      most = std::max(most, held);
    }
    ASSERT_EQ((int)seen.size(), M * V) << what << " stage " << st;
    for (const auto& [key, ops] : seen) EXPECT_EQ(ops, split ? "FBW" : "FB") << what;
    // 1F1B holds at most P - stage microbatches; zb at most P on every stage (1F1B's peak)
    if (k == Kind::one_f_one_b || (k == Kind::interleaved && V == 1)) {
      EXPECT_LE(most, P - st) << what << " stage " << st;
    }
    if (k == Kind::zero_bubble) {
      EXPECT_LE(most, P) << what << " stage " << st;
    }
  }
  // Runs every stage's list with unit times; throws if some stage waits forever.
  EXPECT_NO_THROW(pipe_schedule_bubble(k, P, M, V)) << what;
}

TEST(PipelineSchedule, EveryScheduleIsCompleteOrderedAndDeadlockFree) {
  for (int P = 1; P <= 8; ++P)
    for (int M = 1; M <= 16; ++M) {
      check_schedule(Kind::one_f_one_b, P, M, 1);
      check_schedule(Kind::zero_bubble, P, M, 1);
      for (int V = 1; V <= 4; ++V)
        if (pipe_schedule_error(Kind::interleaved, P, M, V).empty())
          check_schedule(Kind::interleaved, P, M, V);
    }
}

TEST(PipelineSchedule, OneFOneBIsThreeLoops) {
  // stage 0 of 4 with 6 microbatches: 3 warmup forwards, 3 x (F, B), 3 backwards
  const auto s = pipe_schedule(Kind::one_f_one_b, 4, 6);
  std::string ops;
  for (const PipeAction& a : s[0]) ops += (char)a.op + std::to_string(a.micro) + " ";
  EXPECT_EQ(ops, "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5 ");
  std::string last;
  for (const PipeAction& a : s[3]) last += (char)a.op + std::to_string(a.micro) + " ";
  EXPECT_EQ(last, "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 ");
}

TEST(PipelineSchedule, ZeroBubbleDefersTheFirstWeightPassesOfLaterStages) {
  const auto s = pipe_schedule(Kind::zero_bubble, 4, 6);
  auto ops = [&](int st) {
    std::string o;
    for (const PipeAction& a : s[st]) o += (char)a.op + std::to_string(a.micro) + " ";
    return o;
  };
  EXPECT_EQ(ops(0), "F0 F1 F2 F3 B0 W0 F4 B1 W1 F5 B2 W2 B3 W3 B4 W4 B5 W5 ");
  EXPECT_EQ(ops(3), "F0 B0 F1 B1 F2 B2 F3 B3 W0 F4 B4 W1 F5 B5 W2 W3 W4 W5 ");
  // fewer microbatches than stages: still no worse than 1F1B
  for (int P : {4, 8})
    for (int M : {1, 2, 3}) {
      EXPECT_LE(pipe_schedule_bubble(Kind::zero_bubble, P, M, 1),
                pipe_schedule_bubble(Kind::one_f_one_b, P, M, 1) + 1e-12);
    }
}

TEST(PipelineSchedule, UnitTimeBubbleIsTheFormulas) {
  for (int P : {2, 4})
    for (int M : {4, 8, 16}) {
      // 1f1b: (P - 1) idle slots of F + B per stage: (P - 1) / (M + P - 1) of the makespan
      EXPECT_NEAR(pipe_schedule_bubble(Kind::one_f_one_b, P, M, 1), (P - 1.0) / (M + P - 1), 1e-12)
          << "P=" << P << " M=" << M;
      // interleaved with V chunks: the bubble's time shrinks V-fold: (P - 1) / (V M + P - 1)
      for (int V : {2, 4}) {
        if (M % P != 0) continue;
        EXPECT_NEAR(pipe_schedule_bubble(Kind::interleaved, P, M, V), (P - 1.0) / (V * M + P - 1),
                    1e-12)
            << "P=" << P << " M=" << M << " V=" << V;
      }
      // zb (ZB-H1): (P - 1)(F + B - W) of idle per stage, with F = B = W: (P - 1) / (3M + P - 1)
      if (M >= P) {
        EXPECT_NEAR(pipe_schedule_bubble(Kind::zero_bubble, P, M, 1), (P - 1.0) / (3 * M + P - 1),
                    1e-12)
            << "P=" << P << " M=" << M;
      }
    }
}

TEST(PipelineSchedule, BadSettingsAreOneLineNamingTheFlag) {
  auto err = [](Kind k, int P, int M, int V) { return pipe_schedule_error(k, P, M, V); };
  EXPECT_EQ(err(Kind::one_f_one_b, 2, 4, 1), "");
  EXPECT_NE(err(Kind::interleaved, 2, 3, 2).find("multiple of --pp 2"), std::string::npos);
  EXPECT_NE(err(Kind::one_f_one_b, 2, 4, 2).find("--virtual-stages 2 needs"), std::string::npos);
  EXPECT_NE(err(Kind::zero_bubble, 2, 0, 1).find("--grad-accum"), std::string::npos);
  EXPECT_THROW(pipe_schedule_from_name("gpipe"), Error);
  EXPECT_EQ(pipe_schedule_from_name("zb"), Kind::zero_bubble);
}

}  // namespace
}  // namespace zt
