// pipeline_step.h: the train step of a pipeline stage (SPEC section 6, --pp): this rank runs its
// chunks' layers for every microbatch of the step in the order of its schedule (schedule.h),
// receiving activations from the previous virtual stage and gradients from the next, point to
// point over the pp group, and sending its own on (asynchronously, counted in comm.p2p_bytes).
//
// ZeRO inside the pipeline, at every stage: a unit is taken into use (stage 3: gathered) at its
// first use of the step and given back after its last microbatch's backward, its gradients
// accumulate over the step's microbatches and are reduced once, as soon as that last backward
// is done (ZeroEngine::begin_step(micro, per_step)). So a stage holds its own units' parameters
// (and, from stage 2, gradients) whole for the step: 1/P of the model, where the per-microbatch
// alternative would gather and reduce every unit M times (docs/parallelism.md).
#pragma once
#include <memory>

#include "parallel/grid.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/stages.h"
#include "parallel/step/train_step.h"

namespace zt {

std::unique_ptr<TrainStep> make_pipeline_step(Model& model, ZeroEngine& engine, ProcessGrid& grid,
                                              const PipelineLayout& layout, PipeScheduleKind kind);

}  // namespace zt
