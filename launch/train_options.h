// train_options.h: every `zerotrain train` flag of SPEC section 3, parsed and validated once.
// Model flags are shared with the subcommands that build a model from flags.
#pragma once
#include <cstdint>
#include <string>

#include "model/config.h"
#include "optim/adamw.h"
#include "runtime/options.h"

namespace zt {

struct TrainOptions {
  ModelConfig model;
  std::string data, val_data;
  bool allow_data_change = false;  // resume on other data than the checkpoint's
  int micro_batch = 8, grad_accum = 1;
  int64_t steps = 300, warmup_steps = 20;
  double lr = 3e-3, min_lr = 3e-4, clip_grad = 1.0;
  AdamWConfig adamw;
  uint64_t seed = 1337;
  std::string precision = "fp32";
  int zero_stage = 0, tp = 1, pp = 1, ep = 1;
  std::string sequence_parallel = "off";
  std::string pp_split, pp_schedule = "1f1b";  // --pp-split "2,1,1" ("" = balanced by FLOPs)
  int virtual_stages = 1;
  std::string overlap = "on";
  double bucket_mb = 25;
  int prefetch_layers = 1;
  std::string offload_optimizer = "none", offload_params = "none", nvme_dir;
  double nvme_buffer_mb = 256;
  std::string ckpt_dir, resume = "auto";
  int64_t ckpt_every = 0;
  int keep_last = 0;
  std::string metrics, trace;
  std::string status_file;            // rank 0's "finished|stopped|interrupted N"
  std::string on_nonfinite = "skip";  // skip | rollback | stop
  double spike_factor = 0;            // a loss above F x its running mean is bad too (0 = off)
  double comm_timeout = 300;          // seconds a collective may make no progress (0 = forever)
  bool comm_timeout_given = false;
  std::string preempt_signal = "USR1,TERM";  // checkpoint and exit on these
  int preempt_exit_code = 0;                 // ... or exit with this status
  int64_t log_every = 10, eval_every = 0, eval_tokens = 65536;
  std::string device = "cpu";
};

void add_model_flags(po::options_description& d, ModelConfig& m);
void read_model_flags(const po::variables_map& vm, ModelConfig& m);  // on/off flags, validation

// Parses argv for `train`; returns false when --help was printed. Throws zt::Error (one line
// naming the flag) for unknown flags, bad values and unsupported combinations.
bool parse_train_options(int argc, char** argv, TrainOptions& o);

}  // namespace zt
