// fault.h: the test hook that injects a fault into a training run, so the tests can check what
// every other rank does when one dies or hangs (docs/reliability.md). Off unless the environment
// variable ZT_TEST_FAULT is set, as KIND@STEP:RANK:
//   kill@3:1   rank 1 kills itself with SIGKILL at the start of step 3 (as an OOM kill would)
//   hang@3:1   rank 1 stops at the start of step 3 and never comes back
//   nan@3:1    rank 1's gradients of step 3 are NaN (its backward runs with a NaN loss scale)
// A malformed value is one error naming the variable.
#pragma once
#include <cstdint>

namespace zt {

// Called by the training loop at the start of each step (0-based `step`) on every rank.
void test_fault_point(int64_t step, int rank);
// True when this rank's gradients of `step` are to be NaN (nan@STEP:RANK).
bool test_fault_nan(int64_t step, int rank);

}  // namespace zt
