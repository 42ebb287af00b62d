// engine.h: the ZeRO engine (stages 0-3) over the data-parallel communicator.
//
//   stage 0  everything replicated; gradients all-reduced (chunk by chunk, as soon as a unit's
//            gradients are final in the last microbatch), every rank runs AdamW on everything
//   stage 1  optimizer state sharded: full gradients reduce-scattered after the last microbatch,
//            AdamW on the rank's shard, updated parameters all-gathered
//   stage 2  gradients sharded too: each unit's gradients are reduce-scattered as soon as they
//            are final, in every microbatch, into the rank's fp32 shard; the full unit gradient
//            lives only while its reduce-scatter runs
//   stage 3  parameters sharded too: a unit is all-gathered before it computes (the next
//            --prefetch-layers units are issued ahead) and freed right after, in forward and in
//            backward
//
// Units and their chunked shard layout are in layout.h; the engine drives the model through its
// unit hooks (model/transformer.h). fp32 throughout for now: the fp32 parameters are the master
// weights. Every buffer goes through the tracked allocator (params, grads, optim; gathered
// parameters and transient full gradients are `buffers`).
#pragma once
#include <memory>
#include <vector>

#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/comm.h"
#include "parallel/zero/layout.h"

namespace zt {

struct ZeroOptions {
  int stage = 0;
  bool overlap = true;    // issue collectives early and wait late; off: wait at once
  double bucket_mb = 25;  // chunk size of the collectives
  int prefetch = 1;       // stage 3: units gathered ahead of the one computing
};

struct StepStats {
  double grad_norm = 0;
  double exposed_ms = 0;  // time the compute thread waited on communication this step
};

class ZeroEngine {
 public:
  // Takes over the model's parameter and gradient storage (its own buffers are released).
  ZeroEngine(Transformer& model, Communicator& dp, const ZeroOptions& opt);
  ~ZeroEngine();
  ZeroEngine(const ZeroEngine&) = delete;
  ZeroEngine& operator=(const ZeroEngine&) = delete;

  // One optimizer step = begin_step, micro_batches x (forward + backward), finish_step.
  void begin_step(int micro_batches);
  LossParts forward(const int32_t* tokens, int B, int T);  // also for evaluation
  void backward(float loss_scale);
  // Waits for the reductions, clips to max_norm (0 = off), AdamW on this rank's part,
  // re-assembles parameters (stages 1-2). step is 1-based for the bias correction.
  StepStats finish_step(double lr, double max_norm, const AdamWConfig& adamw, int64_t step);

  // Full fp32 parameters / AdamW moments of every unit, assembled on every rank (collective).
  // For checkpoints and tests; stage 3 gathers.
  void gather_full_state(std::vector<std::vector<float>>& params,
                         std::vector<std::vector<float>>* m, std::vector<std::vector<float>>* v);
  // Inverse: every rank passes the full state and keeps its part.
  void load_full_state(const std::vector<std::vector<float>>& params,
                       const std::vector<std::vector<float>>* m,
                       const std::vector<std::vector<float>>* v);
  void release_gathered();  // stage 3: drop every gathered unit (after evaluation)

  const UnitLayout& layout(int unit) const;
  int stage() const { return opt_.stage; }

  struct Unit;

 private:
  Transformer& model_;
  Communicator& dp_;
  ZeroOptions opt_;
  std::vector<std::unique_ptr<Unit>> units_;
  int micro_total_ = 1, micro_ = 0;
  double exposed_ms_ = 0;

  bool tied() const { return !model_.cfg.untie_embeddings; }
  int last_unit() const { return (int)units_.size() - 1; }
  double wait(Work& w);
  void wait_all(std::vector<Work>& ws);
  void issue_gather(int u);
  void ensure_gathered(int u);
  void release(int u);
  void on_before_forward(int u);
  void on_before_backward(int u);
  void on_grads_ready(int u);
  void finish_reductions(int u);
};

}  // namespace zt
