// The device step (parallel/step/device_step.cpp: the passes on a device, the ZeRO engine on the
// host) run with the CPU as its device, on 1-4 ranks, against one process (layout_run.h: losses
// and gradient norms to 1e-5 over 20 steps, parameters after them, evaluation): every ZeRO stage,
// bf16, an untied head with capacity drops. On a GPU the same step runs the kernels the op harness
// checks (tests/cuda/).
#include "tests/mpi/layout_run.h"

namespace zt {
namespace {

using test::LayoutCase;

TEST(DeviceStep, EveryZeroStageMatchesOneProcess) {
  for (int stage : {0, 1, 2, 3}) {
    LayoutCase k;
    k.stage = stage, k.device = true;
    test::run_layout(k);
  }
}

TEST(DeviceStep, Bf16AndAnUntiedHeadWithCapacityDrops) {
  LayoutCase k;
  k.device = true, k.stage = 2, k.precision = DType::bf16, k.tol = 3e-2;
  test::run_layout(k);
  LayoutCase u;
  u.device = true, u.stage = 3, u.untie = true, u.capacity = 1.0;
  test::run_layout(u);
}

}  // namespace
}  // namespace zt
