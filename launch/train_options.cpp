// train_options.cpp: flag table, defaults and validation for `zerotrain train`.
#include "launch/train_options.h"

#include "model/params.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/stages.h"
#include "runtime/device.h"
#include "runtime/error.h"
#include "runtime/signals.h"

namespace zt {

void add_model_flags(po::options_description& d, ModelConfig& m) {
  d.add_options()                                                                     //
      ("layers", with_default(&m.layers), "transformer blocks (>= 1)")                //
      ("model-dim", with_default(&m.model_dim), "residual stream width d (>= 1)")     //
      ("heads", with_default(&m.heads), "attention heads (must divide --model-dim)")  //
      ("ffn-dim", with_default(&m.ffn_dim),
       "hidden size of the dense SwiGLU FFN (dense blocks)")  //
      ("experts", with_default(&m.experts),
       "routed experts per MoE block (0 = a dense model)")                                   //
      ("top-k", with_default(&m.top_k), "experts each token is routed to (1 .. --experts)")  //
      ("shared-experts", with_default(&m.shared_experts),
       "shared expert width in units of --expert-ffn-dim (0 = none)")  //
      ("dense-layers", with_default(&m.dense_layers),
       "how many of the first blocks use the dense FFN (0 .. --layers)")  //
      ("expert-ffn-dim", with_default(&m.expert_ffn_dim),
       "hidden size of each expert's SwiGLU FFN")  //
      ("capacity-factor", with_default(&m.capacity_factor),
       "expert capacity = factor x tokens x top-k / experts per microbatch; 0 = dropless")  //
      ("aux-loss-coef", with_default(&m.aux_loss_coef),
       "weight of the load-balancing loss (>= 0; 0 = off)")  //
      ("router-norm", po::value<std::string>()->default_value("on"),
       "renormalise the top-k gates to sum 1: on|off")                                   //
      ("rope-base", with_default(&m.rope_base), "RoPE frequency base (> 0)")             //
      ("seq-len", with_default(&m.seq_len), "tokens per sample (context length, >= 1)")  //
      ("vocab", with_default(&m.vocab),
       "vocabulary size (2 .. 2^31-1; 256 = the byte tokens of prepare)")  //
      ("untie-embeddings", po::bool_switch(&m.untie_embeddings),
       "give the output head its own weights (default: tied to the embedding)")  //
      ("qat", po::value<std::string>()->default_value("none"),
       "quantization-aware training of the block linears: none|int8|int4|int2 (int8 per output "
       "channel; int4, int2 per group of --qat-group-size input rows)")  //
      ("qat-group-size", with_default(&m.qat.group_size),
       "QAT: input rows sharing one step size (int4, int2; must divide every quantized weight's "
       "input size; 0 = per output channel)")  //
      ("qat-start-step", with_default(&m.qat.start_step),
       "QAT: fake quant from the step after this many completed steps (>= 0)");
}

void read_model_flags(const po::variables_map& vm, ModelConfig& m) {
  require_choice(vm, "router-norm", {"on", "off"});
  m.router_norm = vm["router-norm"].as<std::string>() == "on";
  m.qat.bits = parse_qat_bits(vm["qat"].as<std::string>(), "--qat");
  m.validate();
}

namespace {
const char* kTrainExamples = R"(Examples:
  zerotrain train --data data/default --steps 300 --metrics m.jsonl --ckpt-dir ckpt
  mpirun -np 4 zerotrain train --data data/default --zero-stage 3 --ckpt-dir ckpt
  mpirun -np 8 zerotrain train --data 'shards/*_train_*.bin' --tp 2 --pp 2 --ep 2 --grad-accum 4
  srun -N 2 --ntasks-per-node 4 zerotrain train --data data/default --zero-stage 2 --resume auto \
       --ckpt-dir ckpt
Details: docs/user-guide.md, docs/parallelism.md.)";
}  // namespace

bool parse_train_options(int argc, char** argv, TrainOptions& o) {
  po::options_description model("Model shape"), data("Training data"), opt("Optimizer and batch"),
      par("Parallel layout (run under mpirun or srun)"), off("Offload"), ckpt("Checkpoints"),
      mon("Metrics and logging");
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
      ("micro-batch", with_default(&o.micro_batch),
       "samples per microbatch, per data-parallel rank (>= 1)")  //
      ("grad-accum", with_default(&o.grad_accum),
       "microbatches per optimizer step and rank (>= 1); global batch = micro-batch x grad-accum x "
       "dp")                                                                                 //
      ("steps", with_default(&o.steps), "optimizer steps to train (>= 1)")                   //
      ("lr", with_default(&o.lr), "peak learning rate, reached after the warmup (0 .. 10)")  //
      ("min-lr", with_default(&o.min_lr),
       "learning rate at the last step, end of the cosine (0 .. 10)")  //
      ("warmup-steps", with_default(&o.warmup_steps),
       "steps of linear warmup from 0 to --lr (>= 0)")  //
      ("weight-decay", with_default(&o.adamw.weight_decay),
       "AdamW decoupled weight decay, matrices only (>= 0)")                       //
      ("beta1", with_default(&o.adamw.beta1), "AdamW first-moment decay [0, 1)")   //
      ("beta2", with_default(&o.adamw.beta2), "AdamW second-moment decay [0, 1)")  //
      ("eps", with_default(&o.adamw.eps), "AdamW epsilon (1e-30 .. 1)")            //
      ("clip-grad", with_default(&o.clip_grad),
       "clip the global gradient L2 norm to this (0 = off)")                             //
      ("seed", with_default(&o.seed), "seed of the initial weights and the data order")  //
      ("precision", with_default(&o.precision),
       "parameters and communication in fp32|bf16|fp16 (master weights and moments stay fp32)");
  par.add_options()  //
      ("zero-stage", with_default(&o.zero_stage),
       "ZeRO stage: 0 replicate, 1 shard optimizer state, 2 + gradients, 3 + parameters")  //
      ("tp", with_default(&o.tp),
       "tensor-parallel ranks (divides the world, --heads, FFN sizes, --vocab)")  //
      ("sequence-parallel", with_default(&o.sequence_parallel),
       "with --tp: norms and residual stream split over the sequence: on|off")              //
      ("pp", with_default(&o.pp), "pipeline stages (divides the world; at most --layers)")  //
      ("pp-split", po::value(&o.pp_split),
       "blocks per pipeline stage, e.g. 2,1,1 (default: balanced by FLOPs)")  //
      ("pp-schedule", with_default(&o.pp_schedule),
       "pipeline schedule: 1f1b|interleaved|zb")  //
      ("virtual-stages", with_default(&o.virtual_stages),
       "with --pp-schedule interleaved: model chunks per stage")                                 //
      ("ep", with_default(&o.ep), "expert-parallel ranks inside dp (divides dp and --experts)")  //
      ("overlap", with_default(&o.overlap),
       "overlap ZeRO communication with compute: on|off")  //
      ("bucket-mb", with_default(&o.bucket_mb),
       "size of each ZeRO collective's chunk, in MB (> 0)")  //
      ("prefetch-layers", with_default(&o.prefetch_layers),
       "ZeRO-3: units gathered ahead of the one computing (>= 0)")          //
      ("device", with_default(&o.device), "where training runs: cpu|cuda")  //
      ("on-nonfinite", with_default(&o.on_nonfinite),
       "a non-finite loss or gradient norm (or a --spike-factor spike): skip the update, "
       "rollback to the newest checkpoint and step past the batch, or stop (checkpoint, exit 1): "
       "skip|rollback|stop")  //
      ("spike-factor", with_default(&o.spike_factor),
       "treat a loss above F x the mean of the last 20 finite losses like a non-finite one (0 = "
       "off)")  //
      ("comm-timeout", with_default(&o.comm_timeout),
       "abort the job when a collective or transfer makes no progress for this many seconds, "
       "naming it and the ranks it waits for (0 = wait forever; default ZT_COMM_TIMEOUT_S if set)")(
          "preempt-signal", with_default(&o.preempt_signal),
          "signals that mean checkpoint and exit (0, or --preempt-exit-code): USR1, USR2, TERM, "
          "INT, HUP, ALRM, comma separated; others keep their default action")(
          "preempt-exit-code", with_default(&o.preempt_exit_code),
          "exit status after such a signal's checkpoint when the run is not finished (0-255; the "
          "sbatch templates use 75 to tell a stopped run from a finished one)");
  off.add_options()  //
      ("offload-optimizer", with_default(&o.offload_optimizer),
       "where the fp32 master and AdamW moments live: none|cpu|nvme")  //
      ("offload-params", with_default(&o.offload_params),
       "where stage-3 parameter shards live: none|cpu|nvme")  //
      ("nvme-dir", po::value(&o.nvme_dir),
       "directory for the NVMe offload shard files (one per rank)")  //
      ("nvme-buffer-mb", with_default(&o.nvme_buffer_mb),
       "NVMe-offloaded state resident in memory at once at most, in MB (> 0)");
  ckpt.add_options()                                                                             //
      ("ckpt-dir", po::value(&o.ckpt_dir), "directory of checkpoints (step_NNNNNNNN/, latest)")  //
      ("ckpt-every", with_default(&o.ckpt_every),
       "write a checkpoint every N steps (0 = only at the end)")  //
      ("keep-last", with_default(&o.keep_last),
       "keep the newest K checkpoints (0 = keep all)")  //
      ("resume", with_default(&o.resume),
       "auto: the newest good checkpoint in --ckpt-dir; none; or a checkpoint PATH");
  mon.add_options()  //
      ("metrics", po::value(&o.metrics),
       "JSON Lines metrics file, one line per logged step (written by rank 0)")  //
      ("trace", po::value(&o.trace),
       "Chrome trace file (chrome://tracing, Perfetto), written at the end")  //
      ("status-file", po::value(&o.status_file),
       "rank 0 writes how the run ended to FILE: 'finished STEP', 'stopped STEP' after a "
       "--preempt-signal checkpoint, 'interrupted STEP' after such a signal without --ckpt-dir "
       "(nothing when it failed; for job scripts)")                                               //
      ("log-every", with_default(&o.log_every), "log metrics and progress every N steps (>= 1)")  //
      ("eval-every", with_default(&o.eval_every),
       "validate every N steps (0 = at the last step only)")  //
      ("eval-tokens", with_default(&o.eval_tokens),
       "validation target tokens at most (from the start of the validation data)");
  po::options_description all;
  all.add(model).add(data).add(opt).add(par).add(off).add(ckpt).add(mon);
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: zerotrain train --data DIR [flags]", all, vm,
                     kTrainExamples))
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
  require_min(vm, "comm-timeout", 0);
  require_choice(vm, "on-nonfinite", {"skip", "rollback", "stop"});
  require_min(vm, "spike-factor", 0);
  if (o.spike_factor > 0 && o.spike_factor <= 1)
    fail("--spike-factor must be 0 (off) or above 1 (got ", o.spike_factor, ")");
  if (o.on_nonfinite == "rollback" && o.ckpt_dir.empty())
    fail("--on-nonfinite rollback needs --ckpt-dir (the checkpoints it rolls back to)");
  o.comm_timeout_given = !vm["comm-timeout"].defaulted();
  parse_preempt_signals(o.preempt_signal);  // one error line naming a bad name
  require_range(vm, "preempt-exit-code", 0, 255);
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
  if (o.device == "cuda") {  // the device passes (model/device/): data parallelism and ZeRO
    if (!cuda_built())
      fail(
          "--device cuda: this zerotrain binary was built without CUDA (rebuild with cmake "
          "-DZT_CUDA=ON)");
    if (o.tp > 1 || o.pp > 1 || o.ep > 1)
      not_yet("--device cuda with --tp, --pp or --ep (the GPU runs data parallelism and ZeRO)");
    if (o.model.qat.on()) not_yet("--device cuda with --qat");
    if (o.model.head_dim() > 256)  // the fused attention's limit (model/ops/cuda/attention.cu)
      fail("--device cuda: head dim ", o.model.head_dim(),
           " (--model-dim / --heads) is over the GPU attention's 256");
  }
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
