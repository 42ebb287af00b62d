// train_setup.cpp: building a training run from its flags, and its resume, evaluation and
// checkpoint (train_setup.h).
#include "launch/train_setup.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "launch/build_info.h"
#include "model/evaluate.h"
#include "model/qat.h"
#include "parallel/comm/gather.h"
#include "runtime/error.h"
#include "runtime/trace.h"

namespace zt {
namespace {

namespace fs = std::filesystem;

// "4 stages x 2 chunks, blocks 2+2+2+2, schedule interleaved".
std::string describe(const PipelineLayout& p, const TrainOptions& o) {
  std::string blocks;
  for (int s = 0; s < p.stages; ++s) {
    if (s) blocks += '+';
    blocks += std::to_string(p.blocks_of(s));
  }
  return cat(p.stages, " stages", p.chunks > 1 ? cat(" x ", p.chunks, " chunks") : std::string(),
             ", blocks ", blocks, ", schedule ", o.pp_schedule, ", ", o.grad_accum,
             " microbatches per step");
}

struct DataPaths {
  std::vector<std::string> train, val;  // in stream order
};

// The data a checkpoint was trained on against this run's (names and token counts of the files,
// not their directory). Checkpoints of earlier versions named one path: not checked.
void check_same_data(const nlohmann::json& saved, const TokenData& now, const std::string& from,
                     bool allow_change) {
  if (!saved.is_object() || allow_change) return;
  const nlohmann::json cur = now.describe();
  if (saved.value("files", nlohmann::json()) == cur["files"]) return;
  auto brief = [](const nlohmann::json& d) {  // the manifest's names are checked by read_manifest
    nlohmann::json f = d.value("files", nlohmann::json::array());
    if (!f.is_array()) f = nlohmann::json::array();
    const nlohmann::json& tokens = d.value("tokens", nlohmann::json());
    return cat(f.size(), f.size() == 1 ? " file (" : " files (",
               f.empty() ? std::string() : f.front().at("name").get<std::string>(),
               f.size() > 1 ? cat(" .. ", f.back().at("name").get<std::string>()) : std::string(),
               "), ", tokens.is_number_integer() ? tokens.get<int64_t>() : int64_t{0}, " tokens");
  };
  fail("--resume: '", from, "' was trained on ", brief(saved), "; --data gives ", brief(cur),
       " (pass --allow-data-change to continue on other data)");
}

// --data: a file, a glob or a directory (train.bin or train shards); validation: --val-data in
// the same forms, else the directory's val.bin or val shards.
DataPaths resolve_data(const TrainOptions& o) {
  DataPaths p;
  p.train = resolve_token_files(o.data, "train", "--data");
  if (!o.val_data.empty())
    p.val = resolve_token_files(o.val_data, "val", "--val-data");
  else if (fs::is_directory(o.data))
    p.val = resolve_token_files(o.data, "val", "--data", /*required=*/false);
  return p;
}

ZeroOptions zero_options(const TrainOptions& o, ShardStore* store) {
  ZeroOptions zo;
  zo.stage = o.zero_stage;
  zo.precision = dtype_from_name(o.precision);
  zo.overlap = o.overlap == "on";
  zo.bucket_mb = o.bucket_mb;
  zo.prefetch = o.prefetch_layers;
  zo.store = store;
  zo.optim_in_store = o.offload_optimizer == "nvme";
  zo.params_in_store = o.offload_params == "nvme";
  zo.store_buffer_bytes = (int64_t)(o.nvme_buffer_mb * (1 << 20));
  return zo;
}

// The step's passes: a pipeline's schedule, or every layer on this rank, on the host or (--device
// cuda) on the rank's GPU, local rank % visible GPUs. ZT_TEST_DEVICE_PASSES=1 runs the device
// passes on the CPU instead of the host passes (tests/e2e/device_passes.sh).
std::unique_ptr<TrainStep> make_train_step(const TrainOptions& o, const ProcessContext& ctx,
                                           TrainRun& r) {
  if (o.pp > 1)
    return make_pipeline_step(*r.model, *r.engine, *r.grid, r.pipe,
                              pipe_schedule_from_name(o.pp_schedule));
  if (o.device == "cuda") {
    if (cuda_device_count() == 0)
      fail("--device cuda: no CUDA device is visible to rank ", ctx.rank(),
           " (nvidia-smi lists them; CUDA_VISIBLE_DEVICES may hide them)");
    cuda_select_device(ctx.local_rank());
    r.device = "cuda";
    return make_device_step(*r.model, *r.engine, *r.grid, DeviceKind::cuda);
  }
  const char* test = std::getenv("ZT_TEST_DEVICE_PASSES");
  if (test && std::string(test) == "1") {
    r.device = "cpu (device passes)";
    return make_device_step(*r.model, *r.engine, *r.grid, DeviceKind::cpu);
  }
  return make_data_parallel_step(*r.model, *r.engine, *r.grid);
}

}  // namespace

std::unique_ptr<TrainRun> set_up_training(const TrainOptions& o, const ProcessContext& ctx) {
  const ModelConfig& mc = o.model;
  auto run = std::make_unique<TrainRun>(o, ctx);
  TrainRun& r = *run;
  r.world = make_world_communicator();
  r.grid = std::make_unique<ProcessGrid>(*r.world, o.tp, o.pp, o.ep);

  const DataPaths paths = resolve_data(o);
  r.train = TokenData(paths.train, mc.vocab);  // mapped: each rank reads its samples only
  r.sampler = std::make_unique<Sampler>(r.train.size(), mc.seq_len, o.seed, r.train.what());
  if (!paths.val.empty()) r.val = TokenData(paths.val, mc.vocab);
  if (!o.trace.empty()) Tracer::get().enable(ctx.rank());

  // A pipeline stage holds its own layers' units (parallel/pipeline/stages.h).
  const TensorSlice slice{o.tp, r.grid->coord().tp};
  std::vector<bool> owned;
  if (o.pp > 1) {
    r.pipe = make_pipeline_layout(mc, o.pp, o.virtual_stages, parse_pp_split(o.pp_split));
    owned = stage_units(r.pipe, build_param_table(mc, slice), mc, r.grid->coord().pp);
  }
  // Under --ep a rank holds its ep group rank's share of the routed experts (parallel/expert/).
  const ExpertSlice experts{o.ep, r.grid->coord().ep};
  r.model = std::make_unique<Model>(mc, o.seed, /*with_grads=*/true, slice, owned, experts);
  if (o.ep > 1) {
    r.ep = std::make_unique<ExpertParallel>(r.grid->ep());
    r.model->ep = r.ep.get();
  }
  if (o.tp > 1) {
    r.tp = std::make_unique<TensorParallel>(r.grid->tp());
    r.model->tp = r.tp.get();
    r.model->sequence_parallel = o.sequence_parallel == "on";
  }
  if (o.offload_optimizer == "nvme" || o.offload_params == "nvme")
    r.store = std::make_unique<ShardStore>(o.nvme_dir, ctx.rank());
  const ZeroOptions zo = zero_options(o, r.store.get());
  r.engine = std::make_unique<ZeroEngine>(*r.model, *r.grid, zo);
  r.step = make_train_step(o, ctx, r);

  const GridLayout& g = r.grid->layout();
  r.layout = {{"world", g.world}, {"dp", g.dp}, {"tp", g.tp},
              {"pp", g.pp},       {"ep", g.ep}, {"zero_stage", o.zero_stage}};
  r.samples_per_step = (int64_t)o.micro_batch * o.grad_accum * g.dp;
  r.counts = count_params(build_param_table(mc), mc);  // the whole model's
  r.state.build = build_info();
  r.state.train = {{"seed", o.seed},
                   {"micro_batch", o.micro_batch},
                   {"grad_accum", o.grad_accum},
                   {"samples_per_step", r.samples_per_step},
                   {"steps", o.steps},
                   {"lr", o.lr},
                   {"min_lr", o.min_lr},
                   {"warmup_steps", o.warmup_steps},
                   {"data", r.train.describe()}};
  if (r.rank0()) {
    std::printf(
        "zerotrain train: %lld parameters (%lld active per token), %lld train tokens, "
        "%lld samples of %d tokens per step, %d rank(s) (dp %d x tp %d%s x pp %d%s), ZeRO stage "
        "%d, %s\n",
        (long long)r.counts.params, (long long)r.counts.active, (long long)r.train.size(),
        (long long)r.samples_per_step, mc.seq_len, ctx.world(), g.dp, g.tp,
        r.model->sequence_parallel ? ", sequence parallel" : "", g.pp,
        g.ep > 1 ? cat(", experts over ep ", g.ep, " inside dp").c_str() : "", o.zero_stage,
        o.precision.c_str());
    if (o.pp > 1) std::printf("zerotrain train: pipeline %s\n", describe(r.pipe, o).c_str());
    if (r.store)
      std::printf("zerotrain train: offloading%s%s to %s (%g MB resident at most)\n",
                  zo.optim_in_store ? " optimizer state" : "",
                  zo.params_in_store ? (zo.optim_in_store ? " and parameters" : " parameters") : "",
                  r.store->where().c_str(), o.nvme_buffer_mb);
    std::fflush(stdout);
  }
  return run;
}

namespace {

// Loads checkpoint `from` into the engine and the state (collective): one unit's full state in
// memory at a time, of the experts only the rank's.
void load_training_state(TrainRun& r, const std::string& from, bool verify) {
  const TrainOptions& o = r.o;
  const nlohmann::json man = read_manifest(from, /*verify=*/false);
  const nlohmann::json train = man.value("train", nlohmann::json());
  check_same_data(train.is_object() ? train.value("data", nlohmann::json()) : nlohmann::json(),
                  r.train, from, o.allow_data_change);
  load_checkpoint(
      from, o.model,
      build_param_table(o.model, {}, r.model->eslice),  // whole tensors; each rank takes its slice
      [&](int u, const std::vector<float>& p, const std::vector<float>* m,
          const std::vector<float>* v) { r.engine->load_unit_state(u, p, m, v); },
      true, &r.state, verify, r.model->owned);
  // QAT step sizes: trained ones if the checkpoint's QAT had the same shapes and had started.
  const QatConfig saved = man.at("config").get<ModelConfig>().qat, &now = o.model.qat;
  // (Not when this run's QAT starts later: AdamW's moments would move them until then.)
  r.qat_ready = qat_scales_match(saved, now) && qat_trained_at(saved, r.state.step) &&
                qat_active_at(now, r.state.step);
  if (r.rank0())
    std::printf("zerotrain train: resuming from %s (step %lld)\n", from.c_str(),
                (long long)r.state.step);
  if (r.rank0() && saved.on() && !(saved == now))
    std::printf(
        "zerotrain train: the checkpoint trained with --qat %s (group %d, start %lld); "
        "this run has --qat %s%s\n",
        qat_name(saved.bits), saved.group_size, (long long)saved.start_step, qat_name(now.bits),
        r.qat_ready || !now.on() ? "" : ": its step sizes start again from the weights");
  std::fflush(stdout);
}

}  // namespace

void resume_training(TrainRun& r) {
  const TrainOptions& o = r.o;
  std::string from;
  if (o.resume == "auto" && !o.ckpt_dir.empty())
    from = find_latest_checkpoint(o.ckpt_dir, /*report=*/r.rank0());
  if (o.resume != "auto" && o.resume != "none") from = resolve_checkpoint(o.resume);
  if (from.empty()) return;
  // auto: verified while it was chosen.
  load_training_state(r, from, /*verify=*/o.resume != "auto");
}

void rollback_training(TrainRun& r) {
  const std::string from = find_latest_checkpoint(r.o.ckpt_dir, /*report=*/r.rank0());
  if (from.empty())
    fail("--on-nonfinite rollback: no complete checkpoint in --ckpt-dir '", r.o.ckpt_dir,
         "' to roll back to");
  load_training_state(r, from, /*verify=*/false);
}

const int32_t* fill_microbatch(TrainRun& r, int64_t step, int i, std::vector<int32_t>& batch) {
  const int B = r.o.micro_batch, T = r.o.model.seq_len;
  batch.resize((size_t)B * (T + 1));
  fill_samples(*r.sampler, r.train, first_sample(step, B, r.o.grad_accum, r.dp(), r.dp_rank(), i),
               B, T, batch.data());
  return batch.data();
}

void check_first_step_data(TrainRun& r) {
  std::string err;
  if (r.state.step < r.o.steps) {
    try {
      std::vector<int32_t> batch;
      for (int i = 0; i < r.o.grad_accum; ++i) fill_microbatch(r, r.state.step, i, batch);
    } catch (const Error& e) {
      err = e.what();
    }
  }
  for (const std::string& m : gather_strings(*r.world, err))
    if (!m.empty()) fail_on_rank0(r.ctx.info(), m);
}

double validation_loss(TrainRun& r) {
  if (r.val.empty()) return NAN;
  EvalResult e = evaluate([&](const int32_t* t, int b, int n) { return r.step->evaluate(t, b, n); },
                          r.val, r.o.model.seq_len, r.o.eval_tokens, r.o.micro_batch);
  r.step->end_evaluation();
  return e.ce;
}

std::string checkpoint_training(TrainRun& r) {
  // Unit by unit: the ranks of each unit's group exchange just the pieces each one writes
  // (all_to_all), so a rank holds and receives about 1/dp of its slice of one unit at a time. One
  // rank of each tensor-parallel group writes the parameters tp does not split; a pipeline stage
  // writes its own units (the embedding: the first stage, not the tied head's replica).
  std::vector<float> up, um, uv;
  const bool first_stage = r.grid->coord().pp == 0;
  return save_checkpoint(
      *r.world, r.o.ckpt_dir, r.o.model, r.model->table,
      [&](int u) {
        if (!r.model->owns(u) || (u == r.model->embed_unit && !first_stage))
          return UnitState{nullptr, nullptr, nullptr, true, 1, 0, /*held=*/false};
        const PieceSplit s = r.engine->checkpoint_pieces(u, up, um, uv);
        return UnitState{up.data(), um.data(), uv.data(), true, s.parts, s.index};
      },
      r.state, r.layout, r.o.keep_last, /*replicated=*/r.grid->tp().rank() == 0);
}

}  // namespace zt
