// cmd_train.cpp: `zerotrain train` — parse flags, run the loop.
#include "launch/command.h"
#include "launch/trainer.h"

namespace zt {
namespace {

int cmd_train(int argc, char** argv) {
  TrainOptions o;
  if (!parse_train_options(argc, argv, o)) return 0;
  return run_training(o);
}

}  // namespace
ZT_COMMAND("train", "train the MoE transformer (1 process or under mpirun/srun)", cmd_train);
}  // namespace zt
