// cmd_train.cpp: `zerotrain train` — validate flags and layout on every rank before MPI starts
// (rank 0 reports, every rank exits non-zero), then run the loop.
#include <cstdlib>

#include "launch/command.h"
#include "launch/trainer.h"
#include "parallel/comm/comm.h"
#include "parallel/grid.h"
#include "runtime/error.h"

namespace zt {
namespace {

int cmd_train(int argc, char** argv) {
  ProcessInfo info = discover_process();
  TrainOptions o;
  try {
    if (!parse_train_options(argc, argv, o)) return 0;
  } catch (const Error& e) {
    if (info.world > 1) fail_on_rank0(info, e.what());
    throw;
  }
  validate_layout(info, o.tp, o.pp, o.ep, o.model.experts);
  if (o.comm_timeout_given || !std::getenv("ZT_COMM_TIMEOUT_S")) set_comm_timeout(o.comm_timeout);
  ProcessContext ctx(info, DeviceKind::cpu);
  return run_training(o, ctx);
}

}  // namespace
ZT_COMMAND("train", "train the MoE transformer (1 process or under mpirun/srun)", cmd_train);
}  // namespace zt
