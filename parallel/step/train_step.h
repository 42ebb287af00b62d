// train_step.h: the forward and backward passes of one optimizer step over this rank's
// microbatches, the place where a layout's schedule lives. Today the data-parallel loop
// (data_parallel_step.cpp): every microbatch runs forward then backward through the whole model
// on this rank; the ZeRO engine reduces gradients as units finish. Pipeline schedules (1F1B,
// interleaved, zero-bubble) plug in here. The optimizer update stays with the engine
// (ZeroEngine::finish_step): a step is begin, run, finish_step.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/acts.h"
#include "model/layers.h"
#include "parallel/grid.h"
#include "parallel/zero/engine.h"
#include "runtime/device.h"

namespace zt {

// The losses of one step over the whole global batch (every microbatch of every rank), the same
// on every rank: means of the microbatches' cross-entropy and aux loss, the expert assignments
// dropped by capacity in all of them, and the assignments each block's router made to each expert
// ([layers x experts], LossParts::load).
struct StepLosses {
  double ce = 0, aux = 0;
  int64_t dropped = 0;
  std::vector<int64_t> load;
};

// (ce, aux, dropped, load...) for one exact sum: `load` has load_size(cfg) elements on every rank
// (zeros where no MoE block ran).
std::vector<double> loss_sums(double ce, double aux, int64_t dropped,
                              const std::vector<int64_t>& load);
void add_load(std::vector<int64_t>& into, const std::vector<int64_t>& load);

// Microbatch i of this rank's step: tokens [B, T+1].
using MicrobatchSource = std::function<const int32_t*(int micro)>;

class TrainStep {
 public:
  virtual ~TrainStep() = default;
  // Forward and backward of this rank's `micro` microbatches of B samples of T tokens; the
  // gradients handed to the engine are of grad_scale x the global batch's mean loss.
  virtual StepLosses run(int micro, const MicrobatchSource& batch, int B, int T,
                         float grad_scale = 1.0f) = 0;
  // The loss of one batch, forward only (evaluation); gathered parameters are kept until
  // end_evaluation().
  virtual LossParts evaluate(const int32_t* tokens, int B, int T) = 0;
  virtual void end_evaluation() = 0;
  // A pipeline's schedule (nullptr without a pipeline), and the time this rank waited in the last
  // run for the activations and gradients of its neighbours: its bubble.
  virtual const char* schedule_name() const { return nullptr; }
  virtual double wait_ms() const { return 0; }
};

std::unique_ptr<TrainStep> make_data_parallel_step(Model& model, ZeroEngine& engine,
                                                   ProcessGrid& grid);

// The data-parallel step with the passes on a device (model/device/device_passes.h): the ZeRO
// engine keeps the parameters, gradients and optimizer on the host, each unit's parameters are
// copied to the device when a step first uses it, its gradients there when its backward starts
// and back when they are complete (ZeRO-Offload's split). The device holds every unit's fp32
// parameters and gradients whatever the stage. On DeviceKind::cpu it runs the device passes on the
// host (the tests' way to check them without a GPU). Throws naming what the device passes do not
// run.
std::unique_ptr<TrainStep> make_device_step(Model& model, ZeroEngine& engine, ProcessGrid& grid,
                                            DeviceKind kind);

// The data-parallel loop over a rank's microbatches: engine.begin_step, then for each microbatch
// pass(i, loss_scale) (its forward and backward with the loss scaled by loss_scale, which folds
// in the global mean and the engine's fp16 scale; returns its losses) and end_microbatch; the
// losses of the global batch (collective over dp).
using MicrobatchPass = std::function<LossParts(int micro, float loss_scale)>;
StepLosses run_microbatches(ZeroEngine& engine, Communicator& dp, const ModelConfig& c, int micro,
                            float grad_scale, const MicrobatchPass& pass);

}  // namespace zt
