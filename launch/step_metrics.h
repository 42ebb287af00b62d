// step_metrics.h: what one training step reports: its metrics line (SPEC section 4, JSON Lines
// on rank 0) and its figures on the progress line.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "launch/train_setup.h"
#include "parallel/comm/comm.h"

namespace zt {

// One step's figures, as the loop measured them on this rank.
struct StepRecord {
  int64_t step = 0;    // completed steps after it
  int64_t tokens = 0;  // tokens trained on so far
  double ce = 0, aux = 0, lr = 0;
  int64_t dropped = 0;
  std::vector<int64_t> load;  // [layers x experts]: assignments routed, whole step (LossParts)
  StepStats stats;            // the engine's: gradient norm, exposed ms, fp16 loss scale
  double step_ms = 0, optimizer_ms = 0;
  double passes_ms = 0, wait_ms = 0;  // forward and backward; of them waiting on pipeline p2p
  CommStats comm;                     // bytes this rank sent in the step
  StoreCounters io;       // this rank's traffic with its shard file in the step (NVMe offload)
  double val_loss = NAN;  // when the step ran an evaluation
  QuantError qat;         // QAT: the quantization error of the step's fake-quantized weights
  std::string event;      // "skipped" | "rolled_back" | "stopped": the step made no update
};

// The metrics object of the step. Collective over the world (mem is the largest rank's).
nlohmann::json step_metrics(TrainRun& run, const StepRecord& r);
// "loss 2.913 lr 2.1e-03 gnorm 0.812 1234 tok/s 5.6 GFLOP/s [imb 1.31] [val 2.95]" (imb: the
// experts' load imbalance, MoE models).
// With the step's metrics line: the largest rank's peak memory ("mem 1.2 GiB").
std::string progress_figures(const TrainRun& run, const StepRecord& r, const nlohmann::json& line);

// Where each rank runs, in rank order: [{"host", "local_rank", "threads" (OpenMP)}], for the
// head of the metrics file. Collective over the world (one gather).
nlohmann::json rank_placement(const TrainRun& run);

}  // namespace zt
