// trainer.h: the training loop of `zerotrain train` for one process: sampler -> microbatches ->
// forward/backward -> global-norm clip -> AdamW with the schedule -> metrics, eval, checkpoints.
#pragma once
#include "launch/train_options.h"

namespace zt {

// Runs the whole job; returns the process exit status.
int run_training(const TrainOptions& o);

}  // namespace zt
