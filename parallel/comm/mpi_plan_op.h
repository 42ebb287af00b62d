// mpi_plan_op.h: runs one MessagePlan (message_plan.h) over MPI on the progress thread.
// Receives are posted in order (a reducing one needs a free receive slot), sends in order once
// their dependency is met, at most ZT_COMM_WINDOW in flight each way; completions are collected
// with MPI_Testsome and a reducing receive is combined (reduce.h) as soon as it lands.
#pragma once
#include <mpi.h>

#include "parallel/comm/message_plan.h"
#include "parallel/comm/mpi_progress.h"

namespace zt {

std::unique_ptr<MpiOp> make_plan_op(MessagePlan plan, MPI_Comm comm, int tag);

}  // namespace zt
