// trainer.cpp: one-process training loop (data parallelism arrives with parallel/).
#include "launch/trainer.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/data/sampler.h"
#include "model/data/token_file.h"
#include "model/evaluate.h"
#include "model/transformer.h"
#include "offload/checkpoint.h"
#include "optim/clip.h"
#include "optim/schedule.h"
#include "runtime/error.h"
#include "runtime/metrics.h"

namespace zt {
namespace {

namespace fs = std::filesystem;

struct DataPaths {
  std::string train, val;
};

DataPaths resolve_data(const TrainOptions& o) {
  DataPaths p;
  if (fs::is_directory(o.data)) {
    p.train = (fs::path(o.data) / "train.bin").string();
    if (o.val_data.empty() && fs::exists(fs::path(o.data) / "val.bin"))
      p.val = (fs::path(o.data) / "val.bin").string();
  } else {
    p.train = o.data;
  }
  if (!o.val_data.empty()) p.val = o.val_data;
  if (!fs::exists(p.train)) fail("--data: no token file at '", p.train, "'");
  return p;
}

// Optimizer state of the whole model: fp32 moments per unit.
struct OptimState {
  std::vector<Buffer<float>> m, v;
  int64_t step = 0;  // completed optimizer steps
};

nlohmann::json mem_json() {
  MemStats s = mem_stats();
  auto c = [&](MemCategory k) { return s.current[(int)k]; };
  return {
      {"params", c(MemCategory::params)},   {"grads", c(MemCategory::grads)},
      {"optim", c(MemCategory::optim)},     {"activations", s.peak[(int)MemCategory::activations]},
      {"buffers", c(MemCategory::buffers)}, {"peak", s.total_peak}};
}

}  // namespace

int run_training(const TrainOptions& o) {
  const ModelConfig& mc = o.model;
  DataPaths paths = resolve_data(o);
  TokenFile train = read_token_file(paths.train, mc.vocab);
  Sampler sampler((int64_t)train.tokens.size(), mc.seq_len, o.seed, paths.train);
  TokenFile val;
  if (!paths.val.empty()) val = read_token_file(paths.val, mc.vocab);
  MetricsWriter metrics(o.metrics);

  Transformer model(mc, o.seed);
  OptimState opt;
  for (int u = 0; u < model.table.num_units(); ++u) {
    opt.m.emplace_back(model.table.unit_numel[u], MemCategory::optim);
    opt.v.emplace_back(model.table.unit_numel[u], MemCategory::optim);
  }

  const int B = o.micro_batch, T = mc.seq_len;
  TrainState state;
  state.train = {{"seed", o.seed},
                 {"micro_batch", o.micro_batch},
                 {"grad_accum", o.grad_accum},
                 {"steps", o.steps},
                 {"lr", o.lr},
                 {"min_lr", o.min_lr},
                 {"warmup_steps", o.warmup_steps},
                 {"data", paths.train}};
  std::string resume_from;
  if (o.resume == "auto" && !o.ckpt_dir.empty()) resume_from = find_latest_checkpoint(o.ckpt_dir);
  if (o.resume != "auto" && o.resume != "none") resume_from = resolve_checkpoint(o.resume);
  if (!resume_from.empty()) {
    load_checkpoint(resume_from, model, &opt.m, &opt.v, &state);
    opt.step = state.step;
    std::printf("zerotrain train: resuming from %s (step %lld)\n", resume_from.c_str(),
                (long long)state.step);
  }
  const int64_t G = (int64_t)B * o.grad_accum;  // samples per global batch (dp = 1)
  const double flops_per_token = mc.train_flops_per_token();
  std::printf(
      "zerotrain train: %lld parameters (%lld active per token), %lld train tokens, "
      "%lld samples per step of %d tokens\n",
      (long long)mc.num_params(), (long long)mc.active_params(), (long long)train.tokens.size(),
      (long long)G, T);
  std::fflush(stdout);

  auto run_eval = [&]() -> double {
    if (val.tokens.empty()) return NAN;
    EvalResult r = evaluate(model, val.tokens, T, o.eval_tokens, B);
    return r.ce;
  };

  Progress progress(o.steps);
  std::vector<int32_t> batch((size_t)B * (T + 1));
  double last_val = NAN;
  for (int64_t step = opt.step; step < o.steps; ++step) {
    double t0 = now_ms();
    model.zero_grads();
    double ce = 0, aux = 0;
    int64_t dropped = 0;
    for (int micro = 0; micro < o.grad_accum; ++micro) {
      for (int b = 0; b < B; ++b) {
        int64_t start = sampler.start(step * G + (int64_t)micro * B + b);
        for (int t = 0; t <= T; ++t) batch[(size_t)b * (T + 1) + t] = train.tokens[start + t];
      }
      LossParts lp = model.forward(batch.data(), B, T);
      model.backward(1.0f / (float)o.grad_accum);
      ce += lp.ce / o.grad_accum;
      aux += lp.aux / o.grad_accum;
      dropped += lp.dropped;
    }
    if (!std::isfinite(ce)) fail("loss became ", ce, " at step ", step + 1, " (try a lower --lr)");

    double norm_sq = 0;
    for (int u = 0; u < model.table.num_units(); ++u)
      norm_sq += global_norm_sq(model.unit_grads[u], model.table.unit_numel[u]);
    double grad_norm = std::sqrt(norm_sq);
    float scale = clip_scale(grad_norm, o.clip_grad);
    double lr = lr_at(step, o.lr, o.min_lr, o.warmup_steps, o.steps);
    for (const ParamSpec& p : model.table.params) {
      float* g = model.unit_grads[p.unit] + p.offset;
      if (scale < 1.0f)
        for (int64_t i = 0; i < p.numel; ++i) g[i] *= scale;
      adamw_step(model.unit_params[p.unit] + p.offset, opt.m[p.unit].data() + p.offset,
                 opt.v[p.unit].data() + p.offset, g, p.numel, step + 1, (float)lr, o.adamw,
                 p.decay);
    }
    opt.step = step + 1;
    double step_ms = now_ms() - t0;
    state.step = opt.step;
    state.tokens = opt.step * G * T;

    bool last = opt.step == o.steps;
    bool do_eval = o.eval_every > 0 && opt.step % o.eval_every == 0;
    if (do_eval || (last && !val.tokens.empty())) last_val = run_eval();
    if (opt.step % o.log_every == 0 || last || do_eval) {
      double tokens = (double)G * T;
      nlohmann::json j = {{"step", opt.step},
                          {"loss", ce + aux},
                          {"aux_loss", aux},
                          {"lr", lr},
                          {"grad_norm", grad_norm},
                          {"tokens", (int64_t)(opt.step * G * T)},
                          {"step_ms", step_ms},
                          {"tokens_per_s", tokens / (step_ms / 1000)},
                          {"flops_per_s", tokens * flops_per_token / (step_ms / 1000)},
                          {"dropped", dropped},
                          {"mem", mem_json()},
                          {"comm",
                           {{"allgather_bytes", 0},
                            {"reduce_scatter_bytes", 0},
                            {"allreduce_bytes", 0},
                            {"p2p_bytes", 0},
                            {"alltoall_bytes", 0},
                            {"exposed_ms", 0.0}}},
                          {"layout",
                           {{"world", 1},
                            {"dp", 1},
                            {"tp", 1},
                            {"pp", 1},
                            {"ep", 1},
                            {"zero_stage", o.zero_stage}}}};
      if (do_eval || (last && std::isfinite(last_val))) j["val_loss"] = last_val;
      metrics.write(j);
      char line[256];
      std::snprintf(line, sizeof line, "loss %.4f lr %.2e gnorm %.3f %.0f tok/s %.1f GFLOP/s%s",
                    ce + aux, lr, grad_norm, tokens / (step_ms / 1000),
                    tokens * flops_per_token / step_ms / 1e6,
                    std::isfinite(last_val) && (do_eval || last)
                        ? (" val " + std::to_string(last_val).substr(0, 6)).c_str()
                        : "");
      progress.update(opt.step, line);
    }
    if (!o.ckpt_dir.empty() && ((o.ckpt_every > 0 && opt.step % o.ckpt_every == 0) || last))
      save_checkpoint(o.ckpt_dir, model, opt.m, opt.v, state, o.keep_last);
  }
  progress.finish();
  nlohmann::json done = {{"event", "done"}, {"steps", opt.step}};
  if (std::isfinite(last_val)) done["val_loss"] = last_val;
  metrics.write(done);
  if (std::isfinite(last_val))
    std::printf("validation loss %.4f after %lld steps\n", last_val, (long long)opt.step);
  return 0;
}

}  // namespace zt
