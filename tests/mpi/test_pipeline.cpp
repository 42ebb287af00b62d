// Pipeline parallelism against one process (SPEC section 6: every layout gives the single
// process's losses and parameters up to float reduction order, fp32 1e-5 over 20 steps).
//
// Each case trains 20 steps of pp x dp (x tp) through the pipeline train step and the ZeRO engine
// against one process (tests/mpi/layout_run.h: losses, gradient norms, expert load, every unit,
// the tied embedding's replicas, the evaluation). Cases: pp 2 and 4 with each schedule (1f1b,
// interleaved x2, zb), pp2 x dp2 at ZeRO 1, 2 and 3, pp2 x tp2, an untied head, bf16.
#include "tests/mpi/layout_run.h"

namespace zt::test {
namespace {

// A pipeline case: pp, tp, ZeRO stage, schedule, V, layers, M, untied, precision, tolerance.
void run_pipeline(LayoutCase k) { run_layout(k); }

TEST(Pipeline, EverySchedulesTrainingMatchesOneProcess) {
  const int n = world().size();
  if (n != 2 && n != 4) GTEST_SKIP() << "needs 2 or 4 ranks";
  using K = PipeScheduleKind;
  for (K kind : {K::one_f_one_b, K::zero_bubble}) run_pipeline({n, 1, 0, kind});
  run_pipeline({n, 1, 0, K::interleaved, 2, 2 * n});  // two chunks per stage
  if (n == 2) {
    run_pipeline({2, 1, 0, K::zero_bubble, 1, 4, 4, /*untie=*/true});
    run_pipeline({2, 1, 1, K::one_f_one_b, 1, 4, 3, false, DType::bf16, 3e-2});
    run_pipeline({2, 1, 0, K::one_f_one_b, 1, 3, 1});  // one microbatch, uneven split
  }
}

TEST(Pipeline, ComposesWithZeroAndTensorParallelism) {
  if (world().size() != 4) GTEST_SKIP() << "needs 4 ranks";
  using K = PipeScheduleKind;
  for (int stage : {1, 2, 3})
    run_pipeline({2, 1, stage, stage == 2 ? K::zero_bubble : K::one_f_one_b});
  run_pipeline({2, 1, 3, K::interleaved, 2, 4, 4, /*untie=*/true});
  run_pipeline({2, 2, 0, K::one_f_one_b});  // pp2 x tp2
  run_pipeline({2, 2, 3, K::zero_bubble, 1, 4, 4, true});
}

}  // namespace
}  // namespace zt::test
