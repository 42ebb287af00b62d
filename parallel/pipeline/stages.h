// stages.h: which layers each pipeline stage holds (SPEC section 6: --pp, --pp-split,
// --virtual-stages).
//
// The blocks are cut into P x V contiguous pieces, the virtual stages; virtual stage
// v = chunk * P + stage is chunk `chunk` of pipeline stage `stage` (V = 1: stage s holds piece s).
// The embedding goes with virtual stage 0, the final norm and head with the last. --pp-split
// gives the blocks of each stage (each stage's V chunks share them evenly); by default the blocks
// are balanced by training FLOPs (the head's matmul counted with the last stage), or split evenly
// with V > 1. A stage that computes the tied head holds a replica of the embedding (its gradient
// is summed with the first stage's, docs/parallelism.md).
#pragma once
#include <string>
#include <vector>

#include "model/config.h"
#include "model/params.h"

namespace zt {

struct PipeChunk {
  int first_block = 0, end_block = 0;  // blocks [first_block, end_block)
  bool embed = false, head = false;    // the embedding (virtual stage 0), the head (the last)
};

struct PipelineLayout {
  int stages = 1, chunks = 1;   // P, V
  std::vector<PipeChunk> virt;  // [P * V], by virtual stage
  int virtual_stages() const { return stages * chunks; }
  const PipeChunk& chunk(int stage, int c) const { return virt[c * stages + stage]; }
  int blocks_of(int stage) const;
};

// Parses --pp-split "2,1,1" ("" = default); throws naming the flag.
std::vector<int> parse_pp_split(const std::string& text);

// Why P stages of V chunks with this split cannot hold the model ("" when they can).
std::string pipeline_layout_error(const ModelConfig& cfg, int P, int V,
                                  const std::vector<int>& split);
PipelineLayout make_pipeline_layout(const ModelConfig& cfg, int P, int V,
                                    const std::vector<int>& split = {});

// The units stage `stage` holds: its blocks' units, the embedding with virtual stage 0 (and its
// replica with a tied head), the final norm and head with the last virtual stage. [units]
std::vector<bool> stage_units(const PipelineLayout& p, const ParamTable& t, const ModelConfig& cfg,
                              int stage);

}  // namespace zt
