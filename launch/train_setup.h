// train_setup.h: what a training run holds, built from the flags before its first step
// (train_setup.cpp): the communicators, the data, the model, the offload store, the ZeRO engine
// and the train step, the state a resume restored; and the run's collective chores: resume,
// evaluation, checkpoint. trainer.cpp is the loop over them.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "launch/train_options.h"
#include "model/data/sampler.h"
#include "model/data/token_file.h"
#include "model/model.h"
#include "offload/checkpoint.h"
#include "offload/shard_store.h"
#include "parallel/expert/expert_parallel.h"
#include "parallel/grid.h"
#include "parallel/pipeline/pipeline_step.h"
#include "parallel/step/train_step.h"
#include "parallel/tensor/tensor_parallel.h"
#include "parallel/zero/engine.h"
#include "runtime/process.h"

namespace zt {

struct TrainRun {
  TrainRun(const TrainOptions& opt, const ProcessContext& context) : o(opt), ctx(context) {}
  const TrainOptions& o;
  const ProcessContext& ctx;
  // Declared in the order they are built; destroyed in reverse (the engine before its store).
  std::unique_ptr<Communicator> world;
  std::unique_ptr<ProcessGrid> grid;
  TokenData train, val;  // mapped; val empty without validation data
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<TensorParallel> tp;  // the model's tensor-parallel hook (tp > 1)
  std::unique_ptr<ExpertParallel> ep;  // the model's expert-parallel hook (ep > 1)
  PipelineLayout pipe;                 // the stages' layers (pp > 1)
  std::unique_ptr<Model> model;
  std::unique_ptr<ShardStore> store;  // NVMe offload only
  std::unique_ptr<ZeroEngine> engine;
  std::unique_ptr<TrainStep> step;
  TrainState state;              // completed steps and tokens; restored by resume_training
  nlohmann::json layout;         // SPEC section 4 "layout"
  int64_t samples_per_step = 0;  // the global batch: micro-batch x grad-accum x dp
  ParamCounts counts;
  // Where the passes run: "cpu", "cuda", or "cpu (device passes)" (ZT_TEST_DEVICE_PASSES).
  std::string device = "cpu";
  bool qat_ready = false;  // the QAT step sizes hold trained (or initialised) values

  bool rank0() const { return ctx.rank() == 0; }
  int dp() { return grid->dp().size(); }
  int dp_rank() { return grid->dp().rank(); }
};

// Builds everything (collective: every rank calls it); prints the run's summary on rank 0.
std::unique_ptr<TrainRun> set_up_training(const TrainOptions& o, const ProcessContext& ctx);
// --resume auto|PATH: loads the checkpoint into the engine and the state (collective).
void resume_training(TrainRun& run);
// This rank's microbatch i of step `step` (0-based) into batch [micro-batch, seq_len + 1]; returns
// batch.data(). The samples of a step do not depend on the layout (model/data/sampler.h).
const int32_t* fill_microbatch(TrainRun& run, int64_t step, int i, std::vector<int32_t>& batch);
// --on-nonfinite rollback: loads the newest complete checkpoint in --ckpt-dir into the engine and
// the state (collective); throws when there is none.
void rollback_training(TrainRun& run);
// Reads this rank's samples of the first step to run, before anything is written: a token id
// >= --vocab there ends the run with one line from rank 0 (the failing rank's) and nothing on
// disk. Later samples are checked as they are read. Collective over the world.
void check_first_step_data(TrainRun& run);
// The validation loss on the validation file's first windows (NaN without validation data).
double validation_loss(TrainRun& run);
// QAT (train_qat.cpp): switches fake quant on for the step after r.state.step completed steps
// when --qat-start-step says so, initialising the step sizes from the weights the first time
// (collective); with `measure` the step's passes add up the quantization error for qat_metrics.
void prepare_qat_step(TrainRun& run, bool measure);
// After the step's passes: what they measured (validation passes measure nothing).
QuantError end_qat_step(TrainRun& run);
// The step's "qat" metrics object (collective over the world).
nlohmann::json qat_metrics(TrainRun& run, const QuantError& e);
// Writes a checkpoint of the current state to --ckpt-dir (collective); returns its directory.
std::string checkpoint_training(TrainRun& run);

}  // namespace zt
