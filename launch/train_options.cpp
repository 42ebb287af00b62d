// train_options.cpp: flag table, defaults and validation for `zerotrain train`.
#include "launch/train_options.h"

#include "model/params.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/stages.h"
#include "runtime/error.h"

namespace zt {

void add_model_flags(po::options_description& d, ModelConfig& m) {
  d.add_options()                                                                               //
      ("layers", po::value(&m.layers)->default_value(m.layers), "transformer blocks")           //
      ("model-dim", po::value(&m.model_dim)->default_value(m.model_dim), "residual width d")    //
      ("heads", po::value(&m.heads)->default_value(m.heads), "attention heads (divide d)")      //
      ("ffn-dim", po::value(&m.ffn_dim)->default_value(m.ffn_dim), "dense SwiGLU hidden size")  //
      ("experts", po::value(&m.experts)->default_value(m.experts),
       "routed experts per MoE block")                                             //
      ("top-k", po::value(&m.top_k)->default_value(m.top_k), "experts per token")  //
      ("shared-experts", po::value(&m.shared_experts)->default_value(m.shared_experts),
       "shared expert width in units of --expert-ffn-dim (0 = none)")  //
      ("dense-layers", po::value(&m.dense_layers)->default_value(m.dense_layers),
       "the first blocks that use the dense FFN")  //
      ("expert-ffn-dim", po::value(&m.expert_ffn_dim)->default_value(m.expert_ffn_dim),
       "expert SwiGLU hidden size")  //
      ("capacity-factor", po::value(&m.capacity_factor)->default_value(m.capacity_factor),
       "expert capacity factor (0 = dropless)")  //
      ("aux-loss-coef", po::value(&m.aux_loss_coef)->default_value(m.aux_loss_coef),
       "load-balancing loss coefficient")  //
      ("router-norm", po::value<std::string>()->default_value("on"),
       "renormalise the top-k gates to sum 1: on|off")                                         //
      ("rope-base", po::value(&m.rope_base)->default_value(m.rope_base), "RoPE base")          //
      ("seq-len", po::value(&m.seq_len)->default_value(m.seq_len), "tokens per sample")        //
      ("vocab", po::value(&m.vocab)->default_value(m.vocab), "vocabulary size (256 = bytes)")  //
      ("untie-embeddings", po::bool_switch(&m.untie_embeddings), "separate output head");
}

void read_model_flags(const po::variables_map& vm, ModelConfig& m) {
  require_choice(vm, "router-norm", {"on", "off"});
  m.router_norm = vm["router-norm"].as<std::string>() == "on";
  m.validate();
}

bool parse_train_options(int argc, char** argv, TrainOptions& o) {
  po::options_description model("Model (SPEC section 1)"), data("Data"), opt("Optimisation"),
      par("Parallelism"), off("Offload"), ckpt("Checkpoints"), mon("Monitoring");
  add_model_flags(model, o.model);
  data.add_options()  //
      ("data", po::value(&o.data)->required(),
       "token file (llm.c gpt2 or llama-3 format), glob of shards ('DIR/*_train_*.bin'), or "
       "directory: its train.bin or train shards, in name order")  //
      ("val-data", po::value(&o.val_data),
       "validation tokens in the same forms (default: the directory's val.bin or val shards)")  //
      ("allow-data-change", po::bool_switch(&o.allow_data_change),
       "resume from a checkpoint trained on other files than --data gives");
  opt.add_options()  //
      ("micro-batch", po::value(&o.micro_batch)->default_value(o.micro_batch),
       "samples per microbatch per rank")  //
      ("grad-accum", po::value(&o.grad_accum)->default_value(o.grad_accum),
       "microbatches per step")                                                  //
      ("steps", po::value(&o.steps)->default_value(o.steps), "optimizer steps")  //
      ("lr", po::value(&o.lr)->default_value(o.lr), "peak learning rate")        //
      ("min-lr", po::value(&o.min_lr)->default_value(o.min_lr),
       "learning rate at the last step")  //
      ("warmup-steps", po::value(&o.warmup_steps)->default_value(o.warmup_steps),
       "linear warmup steps")  //
      ("weight-decay", po::value(&o.adamw.weight_decay)->default_value(o.adamw.weight_decay),
       "AdamW decoupled weight decay (matrices only)")                                   //
      ("beta1", po::value(&o.adamw.beta1)->default_value(o.adamw.beta1), "AdamW beta1")  //
      ("beta2", po::value(&o.adamw.beta2)->default_value(o.adamw.beta2), "AdamW beta2")  //
      ("eps", po::value(&o.adamw.eps)->default_value(o.adamw.eps), "AdamW epsilon")      //
      ("clip-grad", po::value(&o.clip_grad)->default_value(o.clip_grad),
       "global gradient-norm clip (0 = off)")                                             //
      ("seed", po::value(&o.seed)->default_value(o.seed), "seed of init and data order")  //
      ("precision", po::value(&o.precision)->default_value(o.precision), "fp32|bf16|fp16");
  par.add_options()  //
      ("zero-stage", po::value(&o.zero_stage)->default_value(o.zero_stage),
       "ZeRO stage 0|1|2|3")                                                 //
      ("tp", po::value(&o.tp)->default_value(o.tp), "tensor-parallel size")  //
      ("sequence-parallel", po::value(&o.sequence_parallel)->default_value(o.sequence_parallel),
       "with --tp: norms and residual stream split over the sequence: on|off")  //
      ("pp", po::value(&o.pp)->default_value(o.pp), "pipeline-parallel size")   //
      ("pp-split", po::value(&o.pp_split),
       "blocks per pipeline stage, e.g. 2,1,1 (default: balanced by FLOPs)")  //
      ("pp-schedule", po::value(&o.pp_schedule)->default_value(o.pp_schedule),
       "pipeline schedule: 1f1b|interleaved|zb")  //
      ("virtual-stages", po::value(&o.virtual_stages)->default_value(o.virtual_stages),
       "with --pp-schedule interleaved: model chunks per stage")             //
      ("ep", po::value(&o.ep)->default_value(o.ep), "expert-parallel size")  //
      ("overlap", po::value(&o.overlap)->default_value(o.overlap),
       "overlap communication: on|off")  //
      ("bucket-mb", po::value(&o.bucket_mb)->default_value(o.bucket_mb),
       "gradient bucket size (MB)")  //
      ("prefetch-layers", po::value(&o.prefetch_layers)->default_value(o.prefetch_layers),
       "stage-3 all-gather lookahead")  //
      ("device", po::value(&o.device)->default_value(o.device), "cpu|cuda");
  off.add_options()  //
      ("offload-optimizer", po::value(&o.offload_optimizer)->default_value(o.offload_optimizer),
       "where the fp32 master and AdamW moments live: none|cpu|nvme")  //
      ("offload-params", po::value(&o.offload_params)->default_value(o.offload_params),
       "where stage-3 parameter shards live: none|cpu|nvme")                          //
      ("nvme-dir", po::value(&o.nvme_dir), "directory for NVMe offload shard files")  //
      ("nvme-buffer-mb", po::value(&o.nvme_buffer_mb)->default_value(o.nvme_buffer_mb),
       "most NVMe-offloaded state resident in memory at once (MB)");
  ckpt.add_options()                                                //
      ("ckpt-dir", po::value(&o.ckpt_dir), "checkpoint directory")  //
      ("ckpt-every", po::value(&o.ckpt_every)->default_value(o.ckpt_every),
       "checkpoint every N steps (0 = only at the end)")  //
      ("keep-last", po::value(&o.keep_last)->default_value(o.keep_last),
       "keep the newest K checkpoints (0 = all)")  //
      ("resume", po::value(&o.resume)->default_value(o.resume), "auto|none|PATH");
  mon.add_options()                                                                            //
      ("metrics", po::value(&o.metrics), "JSON Lines metrics file (rank 0)")                   //
      ("trace", po::value(&o.trace), "Chrome trace file")                                      //
      ("log-every", po::value(&o.log_every)->default_value(o.log_every), "log every N steps")  //
      ("eval-every", po::value(&o.eval_every)->default_value(o.eval_every),
       "validate every N steps (0 = at the end only)")  //
      ("eval-tokens", po::value(&o.eval_tokens)->default_value(o.eval_tokens),
       "validation target tokens");
  po::options_description all;
  all.add(model).add(data).add(opt).add(par).add(off).add(ckpt).add(mon);
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: zerotrain train --data DIR [flags]", all, vm))
    return false;

  read_model_flags(vm, o.model);
  require_min(vm, "micro-batch", 1);
  require_min(vm, "grad-accum", 1);
  require_min(vm, "steps", 1);
  require_min(vm, "warmup-steps", 0);
  require_range(vm, "lr", 0, 10);
  require_range(vm, "min-lr", 0, 10);
  require_min(vm, "weight-decay", 0);
  require_range(vm, "beta1", 0, 0.999999);
  require_range(vm, "beta2", 0, 0.999999);
  require_range(vm, "eps", 1e-30, 1);
  require_min(vm, "clip-grad", 0);
  require_choice(vm, "precision", {"fp32", "bf16", "fp16"});
  require_range(vm, "zero-stage", 0, 3);
  require_min(vm, "tp", 1);
  require_min(vm, "pp", 1);
  require_choice(vm, "pp-schedule", {"1f1b", "interleaved", "zb"});
  require_min(vm, "virtual-stages", 1);
  require_min(vm, "ep", 1);
  require_choice(vm, "overlap", {"on", "off"});
  require_range(vm, "bucket-mb", 0.001, 1e6);
  require_min(vm, "prefetch-layers", 0);
  require_choice(vm, "device", {"cpu", "cuda"});
  require_choice(vm, "offload-optimizer", {"none", "cpu", "nvme"});
  require_choice(vm, "offload-params", {"none", "cpu", "nvme"});
  require_range(vm, "nvme-buffer-mb", 0.01, 1e7);
  require_min(vm, "ckpt-every", 0);
  require_min(vm, "keep-last", 0);
  require_min(vm, "log-every", 1);
  require_min(vm, "eval-every", 0);
  require_min(vm, "eval-tokens", 1);
  if (o.min_lr > o.lr) fail("--min-lr ", o.min_lr, " is above --lr ", o.lr);
  // Whether tp fits the model's sizes here; how tp, pp and ep fit the world once, by
  // validate_layout (parallel/grid.h), before MPI starts.
  if (const std::string e = tensor_slice_error(o.model, o.tp); !e.empty()) fail(e);
  require_choice(vm, "sequence-parallel", {"on", "off"});
  if (o.sequence_parallel == "on" && o.tp == 1)
    fail("--sequence-parallel on needs --tp > 1 (it splits the sequence over the tp ranks)");
  if (o.sequence_parallel == "on" && ((int64_t)o.micro_batch * o.model.seq_len) % o.tp != 0)
    fail("--sequence-parallel on needs --micro-batch x --seq-len (",
         (int64_t)o.micro_batch * o.model.seq_len, " tokens) divisible by --tp ", o.tp);
  // How the blocks and the microbatches fit the pipeline (whether pp fits the world: below).
  if (o.pp == 1 && (o.virtual_stages > 1 || !o.pp_split.empty()))
    fail(o.virtual_stages > 1 ? "--virtual-stages" : "--pp-split", " needs --pp > 1");
  if (o.pp > 1) {
    const std::vector<int> split = parse_pp_split(o.pp_split);
    if (const std::string e = pipeline_layout_error(o.model, o.pp, o.virtual_stages, split);
        !e.empty())
      fail(e);
    if (const std::string e = pipe_schedule_error(pipe_schedule_from_name(o.pp_schedule), o.pp,
                                                  o.grad_accum, o.virtual_stages);
        !e.empty())
      fail(e);
  }

  // Capabilities that later parts of the runtime bring; refuse them plainly rather than ignore
  // them.
  auto not_yet = [](const char* what) { fail(what, " is not implemented in this version yet"); };
  if (o.device == "cuda") not_yet("--device cuda (GPU training)");
  if (o.offload_params != "none" && o.zero_stage != 3)
    fail("--offload-params ", o.offload_params,
         " needs --zero-stage 3 (below it every rank holds all parameters)");
  if (o.offload_params == "nvme" || o.offload_optimizer == "nvme") {
    if (o.nvme_dir.empty()) fail("--offload-optimizer/--offload-params nvme needs --nvme-dir");
  } else if (!o.nvme_dir.empty()) {
    fail("--nvme-dir is only used with --offload-optimizer nvme or --offload-params nvme");
  }
  return true;
}

}  // namespace zt
