// checkpoint.h: checkpoints in the layout of SPEC section 5, and loading a model for eval/generate.
//
//   CKPT_DIR/latest                 name of the newest complete checkpoint (replaced atomically)
//   CKPT_DIR/step_00000100/
//       manifest.json               config, layout, step, tokens, sampler state, parameter table,
//                                   checksum of every shard file
//       rank_NNNNN.h5               one per rank: its piece of /params/<name>,
//                                   /optim/exp_avg/<name>, /optim/exp_avg_sq/<name>, each with the
//                                   attribute logical_offset (flattened element offset)
//       COMPLETE                    written last
//
// A step directory is assembled under a temporary name and renamed into place only when it is
// complete, so a crash mid-write never leaves something that looks loadable. The pieces are a
// plain even split of each tensor, independent of the run's layout, so any layout (ranks, ZeRO
// stage, precision) loads any checkpoint.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model.h"
#include "parallel/comm/comm.h"

namespace zt {

class H5File;

struct TrainState {
  int64_t step = 0;      // completed optimizer steps
  int64_t tokens = 0;    // tokens trained on
  nlohmann::json train;  // the run's training flags (seed, lr, batch...) for the manifest
  nlohmann::json build;  // the writing binary's build facts (version, commit, libraries)
};

// Full training state, one flat fp32 vector per unit (ParamTable layout): parameters or AdamW
// moments.
using UnitVectors = std::vector<std::vector<float>>;

// What a rank file holds of each unit, pulled one unit at a time: state(u) gives unit u's fp32
// parameters and moments, called for u = 0, 1, ... in order on every rank at once (it may be
// collective: ZeroEngine::checkpoint_pieces); the pointers must stay valid until the next call.
// The rank file holds piece `index` of `parts` (even_piece, runtime/split.h) of every parameter
// (of this rank's tensor-parallel slice of it): `parts` ranks write each slice. The state is
// either the unit's full state (in the table's layout), or (pieces) only this rank's pieces, back
// to back in table order. Memory: one unit's state at most, not the model's.
struct UnitState {
  const float *p, *m, *v;
  bool pieces = false;
  int parts = 1, index = 0;
  bool held = true;  // false: another rank writes this unit (a pipeline stage holds only its own)
};
using UnitSource = std::function<UnitState(int unit)>;
// A source over whole-model vectors (one process holding everything).
UnitSource unit_source(const UnitVectors& params, const UnitVectors& m, const UnitVectors& v);

// Writes CKPT_DIR/step_XXXXXXXX, collective over `world` (every rank calls it): rank 0 prepares
// the temporary directory; every rank writes rank_NNNNN.h5, its even piece of every tensor with
// the logical offset it covers, and syncs it; the files' sizes and checksums go to rank 0, which
// writes the manifest and COMPLETE, renames the directory into place, updates `latest` and drops
// checkpoints beyond --keep-last. Returns the step directory.
std::string save_checkpoint(Communicator& world, const std::string& ckpt_dir,
                            const ModelConfig& cfg, const ParamTable& table,
                            const UnitSource& state, const TrainState& st,
                            const nlohmann::json& layout, int keep_last, bool replicated = true);

// The steps of save_checkpoint, also for writing the rank files of N ranks from one process (an
// offline tool, the tests).
struct RankFile {
  std::string name;
  uint64_t bytes = 0, checksum = 0;
};
std::string rank_file_name(int rank);  // "rank_00003.h5"
std::string checkpoint_tmp_dir(const std::string& ckpt_dir, int64_t step);
void prepare_checkpoint_dir(const std::string& ckpt_dir, int64_t step);
// `replicated`: this rank writes the parameters tensor parallelism does not split (one rank of
// each tensor-parallel group does). A piece of a slice carries the attribute `slice` (row0, col0,
// rows, cols): where the slice sits in the tensor seen as [rows, cols].
RankFile write_rank_file(const std::string& tmp_dir, int rank, int world, const ParamTable& table,
                         const UnitSource& state, int64_t step, bool replicated = true);
// Rank 0, once every rank file is written: the manifest (listing every tensor of the model),
// COMPLETE, the rename into place, `latest`, and --keep-last.
std::string finish_checkpoint(const std::string& ckpt_dir, const std::vector<RankFile>& files,
                              const ModelConfig& cfg, const TrainState& st, nlohmann::json layout,
                              int keep_last);

// Resolves PATH to a loadable step directory: a step directory itself, or a checkpoint root whose
// `latest` (or newest complete step) is used. Throws naming the path and what is missing.
std::string resolve_checkpoint(const std::string& path);
// Newest complete, verified checkpoint under ckpt_dir, or "" if none; with `report`, says on
// stderr which ones were skipped and why (one rank of a job is enough).
std::string find_latest_checkpoint(const std::string& ckpt_dir, bool report = true);

// Parses the manifest after checking COMPLETE; with verify, also every rank file's size and
// checksum.
nlohmann::json read_manifest(const std::string& step_dir, bool verify = true);

// Reads parameters, moments and state written for a model of config `cfg` (throws naming the
// first mismatching field when the checkpoint belongs to another model). Any layout can load it:
// the caller takes its own part (ZeroEngine::load_unit_state).
void load_checkpoint(const std::string& step_dir, const ModelConfig& cfg, const ParamTable& table,
                     UnitVectors& params, UnitVectors* m, UnitVectors* v, TrainState* st);

// `table` holds whole tensors (no tensor slice); with an expert slice (model/params.h) only the
// rank's experts are read, the others' places in the logical units left zero.
// Streaming form: sink(u, params, m, v) receives each unit's full state in turn (m and v null
// without `moments`); memory: one unit's state. The checksums are verified while reading (unless
// `verify` is off: for a checkpoint find_latest_checkpoint has just verified); a damaged file
// throws (after some units may have been handed over: discard them).
using UnitSink = std::function<void(int unit, const std::vector<float>& params,
                                    const std::vector<float>* m, const std::vector<float>* v)>;
// `units` ([units], empty: all): the units to read (a pipeline stage reads its own).
void load_checkpoint(const std::string& step_dir, const ModelConfig& cfg, const ParamTable& table,
                     const UnitSink& sink, bool moments, TrainState* st, bool verify = true,
                     const std::vector<bool>& units = {});

// The whole tensor p (of the whole-model table) of `group` ("params/", "optim/exp_avg/",
// "optim/exp_avg_sq/") into dst[p.numel], from the pieces in a checkpoint's rank files, whatever
// layout wrote them; throws naming the checkpoint unless they cover it exactly once.
void read_checkpoint_tensor(std::vector<H5File>& files, const std::string& group,
                            const ParamSpec& p, float* dst, const std::string& step_dir);

// The model config stored with a checkpoint (step directory, checkpoint root or exported .h5).
ModelConfig checkpoint_model_config(const std::string& path);
// Parameters only, for eval/generate: from a checkpoint (any form above) or an exported model.h5.
void load_model_weights(const std::string& path, Model& model);

}  // namespace zt
