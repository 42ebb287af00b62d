// trainer.h: the training loop of `zerotrain train`, one process per rank: this rank's
// microbatches -> forward and backward (the train step) -> global-norm clip and AdamW (the ZeRO
// engine) -> validation, metrics (rank 0), checkpoints, a requested stop.
#pragma once
#include "launch/train_options.h"
#include "runtime/process.h"

namespace zt {

// Runs the whole job on this rank; returns the process exit status.
int run_training(const TrainOptions& o, const ProcessContext& ctx);

}  // namespace zt
