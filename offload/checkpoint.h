// checkpoint.h: checkpoints in the layout of SPEC section 5, and loading a model for eval/generate.
//
//   CKPT_DIR/latest                 name of the newest complete checkpoint (replaced atomically)
//   CKPT_DIR/step_00000100/
//       manifest.json               config, layout, step, tokens, sampler state, parameter table,
//                                   checksum of every shard file
//       rank_00000.h5               /params/<name>, /optim/exp_avg/<name>, /optim/exp_avg_sq/<name>
//       COMPLETE                    written last
//
// A step directory is assembled under a temporary name and renamed into place only when it is
// complete, so a crash mid-write never leaves something that looks loadable. This version writes
// and reads single-process (dp = 1) checkpoints; rank files already carry each tensor's logical
// offset so sharded layouts fit the same scheme.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/transformer.h"
#include "runtime/alloc.h"

namespace zt {

struct TrainState {
  int64_t step = 0;      // completed optimizer steps
  int64_t tokens = 0;    // tokens trained on
  nlohmann::json train;  // the run's training flags (seed, lr, batch...) for the manifest
};

// Writes CKPT_DIR/step_XXXXXXXX and points `latest` at it. m, v: AdamW moments per unit.
// Returns the step directory's path. Deletes older complete checkpoints beyond keep_last (> 0).
std::string save_checkpoint(const std::string& ckpt_dir, Transformer& model,
                            const std::vector<Buffer<float>>& m,
                            const std::vector<Buffer<float>>& v, const TrainState& st,
                            int keep_last);

// Resolves PATH to a loadable step directory: a step directory itself, or a checkpoint root whose
// `latest` (or newest complete step) is used. Throws naming the path and what is missing.
std::string resolve_checkpoint(const std::string& path);
// Newest complete, verified checkpoint under ckpt_dir, or "" if none; reports skipped ones on
// stderr with the reason.
std::string find_latest_checkpoint(const std::string& ckpt_dir);

nlohmann::json read_manifest(const std::string& step_dir);  // verifies COMPLETE and checksums

// Restores parameters (and moments/state when m, v, st are given) into a model whose config must
// equal the checkpoint's (throws naming the first mismatching field).
void load_checkpoint(const std::string& step_dir, Transformer& model,
                     std::vector<Buffer<float>>* m = nullptr,
                     std::vector<Buffer<float>>* v = nullptr, TrainState* st = nullptr);

// The model config stored with a checkpoint (step directory, checkpoint root or exported .h5).
ModelConfig checkpoint_model_config(const std::string& path);
// Parameters only, for eval/generate: from a checkpoint (any form above) or an exported model.h5.
void load_model_weights(const std::string& path, Transformer& model);

uint64_t file_checksum(const std::string& path);  // FNV-1a 64 of the file's bytes

}  // namespace zt
