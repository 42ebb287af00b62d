// engine.h: the ZeRO engine (stages 0-3) over the data-parallel groups of the grid.
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
// Units and their chunked shard layout are in layout.h; the model's passes tell the engine when a
// unit is used and when its gradients are complete through the engine's hooks (model/passes.h).
// Every buffer goes through the tracked allocator (params, grads, optim; gathered parameters, fp32
// working copies and transient full gradients are `buffers`).
//
// Precision. fp32: the parameters are the master weights. bf16 / fp16: parameters are kept and
// communicated in 16 bits (params: 2 bytes each, stage 3 only the shard), the fp32 master weights
// and both AdamW moments are the optimizer state (12 bytes, sharded from stage 1 on). The model's
// ops run in fp32 on a working copy of the unit in use (unpacked before it computes, freed after).
// Gradients are communicated in 16 bits (reduced in fp32 inside the collectives); stages 0-1 keep
// them in 16 bits (2 bytes), stages 2-3 accumulate the reduced shard in fp32 (4 bytes / N, 2
// bytes / N more than the ZeRO paper's count). fp16 scales the loss dynamically: a step whose
// gradients overflow is skipped and the scale halves; after growth_interval good steps it doubles.
//
// Offload (engine_offload.cpp). With a StateStore, the optimizer state (fp32 master and both
// moments) and, at stage 3, the parameter shards can live in the store instead of memory. The
// optimizer step then streams the rank's state through a few tile-sized staging buffers: tile
// i+2 is read while tile i computes and tile i-1 is written, all inside store_buffer_bytes. A
// stage-3 parameter shard is read from the store before its all-gather (one unit beyond the
// --prefetch-layers gathers is read ahead, when the buffer has room) and dropped when the
// all-gather is done, so at most store_buffer_bytes of parameters are resident either.
#pragma once
#include <memory>
#include <vector>

#include "model/model.h"
#include "model/passes.h"
#include "optim/adamw.h"
#include "optim/adamw_simd.h"
#include "parallel/comm/comm.h"
#include "parallel/grid.h"
#include "parallel/zero/layout.h"
#include "parallel/zero/plan.h"
#include "parallel/zero/state_store.h"

namespace zt {

struct PieceSplit {
  int parts = 1, index = 0;
};

struct StepStats {
  double grad_norm = 0;   // of the unscaled gradient, before clipping
  double exposed_ms = 0;  // time the compute thread waited on communication this step
  bool skipped = false;   // no update was made: fp16 overflow, or the guard (finish_step)
  double loss_scale = 1;  // fp16: the scale this step's backward used
  double io_wait_ms = 0;  // offload: time the compute thread waited on the store this step
};

// finish_step skips the update (the step's gradients are dropped, parameters and moments
// unchanged, StepStats::skipped) when `skip` or, with skip_nonfinite, when the gradient norm is
// not finite (every rank computes the same norm, so all skip together).
struct StepGuard {
  bool skip = false, skip_nonfinite = false;
};

class ZeroEngine {
 public:
  // Takes over the model's parameter and gradient storage (its own buffers are released). Each
  // unit is partitioned over its group of the grid (plan.h); the gradient norm and the fp16
  // overflow check are agreed over the whole world.
  ZeroEngine(Model& model, ProcessGrid& grid, const ZeroOptions& opt);
  ~ZeroEngine();
  ZeroEngine(const ZeroEngine&) = delete;
  ZeroEngine& operator=(const ZeroEngine&) = delete;

  // One optimizer step = begin_step, micro_batches x (forward + backward through hooks(), with
  // the loss scaled by loss_scale(); end_microbatch), finish_step. Evaluation runs forward
  // passes through hooks() too, then release_gathered().
  // per_step: every unit's grads_ready comes once, after its last microbatch (a pipeline stage
  // accumulates its units' gradients over the step and reduces them once; end_microbatch is not
  // called); otherwise once per microbatch.
  void begin_step(int micro_batches, bool per_step = false);
  const UnitHooks& hooks() const { return hooks_; }
  void end_microbatch();
  // Waits for the reductions, clips to max_norm (0 = off), AdamW on this rank's part,
  // re-assembles parameters (stages 1-2). step is 1-based for the bias correction.
  // guard: see StepGuard.
  StepStats finish_step(double lr, double max_norm, const AdamWConfig& adamw, int64_t step,
                        StepGuard guard = {});

  // Full fp32 parameters / AdamW moments of one unit, assembled on every rank (collective; stage 3
  // gathers): memory for one unit's full state, not the model's.
  void gather_unit_state(int unit, std::vector<float>& params, std::vector<float>* m,
                         std::vector<float>* v);
  // For a checkpoint written by every dp rank (collective): this rank's even piece (even_piece in
  // runtime/split.h, split over dp ranks) of each parameter of the unit, back to back in table
  // order, for the fp32 master and both moments. Moves ~1/dp of the unit per rank
  // (engine_checkpoint.cpp), where gather_unit_state moves all of it.
  // Returns the split: piece `index` of `parts` (the unit's group).
  PieceSplit checkpoint_pieces(int unit, std::vector<float>& params, std::vector<float>& m,
                               std::vector<float>& v);
  // Inverse, for one unit: every rank passes the unit's logical state (the whole tensors, as the
  // table with tensor slice 1 of 1 lays them out) and keeps its slice's part.
  void load_unit_state(int unit, const std::vector<float>& params, const std::vector<float>* m,
                       const std::vector<float>* v);
  void release_gathered();  // drop every gathered unit and working copy (after evaluation)
  // The passes keep a copy of every unit's parameters of their own from forward to backward (the
  // device step, parallel/step/device_step.cpp): a unit's backward use then only sets up its
  // gradient buffer, with no stage-3 gather and no 16-bit working copy.
  void passes_keep_params() { keep_params_ = true; }

  int stage() const { return opt_.stage; }
  DType precision() const { return opt_.precision; }
  double loss_scale() const { return loss_scale_; }
  int64_t skipped_steps() const { return skipped_steps_; }

  struct Unit;
  struct StagingSlot;

 private:
  Model& model_;
  ProcessGrid& grid_;
  ZeroOptions opt_;
  std::vector<std::unique_ptr<Unit>> units_;
  UnitHooks hooks_;
  int micro_total_ = 1, micro_ = 0;
  bool per_step_ = false;
  bool keep_params_ = false;  // passes_keep_params()
  double exposed_ms_ = 0, io_wait_ms_ = 0;
  int64_t tile_ = 0;                // offload: elements per staged tile of the optimizer step
  std::vector<StagingSlot> slots_;  // offload: the tiles in flight (engine_unit.h)
  int64_t params_resident_ = 0;     // offload: bytes of parameter shards read from the store
  int64_t shard_budget_ = 0;        // offload: what of the buffer the staging slots leave to shards
  double loss_scale_ = 1;
  int good_steps_ = 0;
  int64_t skipped_steps_ = 0;
  bool lowp() const { return opt_.precision != DType::fp32; }

  bool tied() const { return !model_.cfg.untie_embeddings; }
  int last_unit() const { return (int)units_.size() - 1; }
  double wait(Work& w);
  void wait_all(std::vector<Work>& ws);
  void issue_gather(int u);
  void acquire(int u);  // the unit's fp32 parameters are at model.unit_params[u] after it
  void release(int u);  // frees what acquire made (stage-3 gather, 16-bit working copy)
  void alloc_grads(int u);
  bool grads_finite();
  void use_forward(int u);
  void use_backward(int u);
  void on_grads_ready(int u);
  void finish_reductions(int u);
  void sum_tied_embedding();
  // offload (engine_offload.cpp)
  void define_store_arrays(const StagingPlan& staging);
  void store_put(Unit& x, int a, const void* src);                  // whole array, synchronously
  const float* f32_state(Unit& x, int a, std::vector<float>& tmp);  // fp32 array, read if stored
  void wait_io(StateStore::Ticket& t);
  void fetch(int u);       // starts reading u's parameter shard from the store
  void read_ahead(int u);  // fetch(u) when the buffer has room
  void drop_shard(int u);  // frees the read parameter shard (after its all-gather)
  void drop_all_shards();
  void run_updates(const std::vector<const float*>& grads, AdamWOptions ao, double lr,
                   const AdamWConfig& adamw, int64_t step);
};

}  // namespace zt
