// trainer.h: the training loop of `zerotrain train`, one process per rank: sampler -> this rank's
// microbatches -> forward/backward through the ZeRO engine -> global-norm clip -> AdamW with the
// schedule -> metrics (rank 0), validation, checkpoints.
#pragma once
#include "launch/train_options.h"
#include "runtime/process.h"

namespace zt {

// Runs the whole job on this rank; returns the process exit status.
int run_training(const TrainOptions& o, const ProcessContext& ctx);

}  // namespace zt
