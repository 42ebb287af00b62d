// trainer.cpp: the training loop over the ZeRO engine (data parallelism over every rank; tensor,
// pipeline and expert parallelism are refused by the flag parser until they exist).
#include "launch/trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "model/data/sampler.h"
#include "model/data/token_file.h"
#include "model/evaluate.h"
#include "model/model.h"
#include "offload/checkpoint.h"
#include "offload/shard_store.h"
#include "optim/lr_schedule.h"
#include "parallel/grid.h"
#include "parallel/step/train_step.h"
#include "parallel/zero/engine.h"
#include "runtime/error.h"
#include "runtime/metrics.h"
#include "runtime/signals.h"
#include "runtime/trace.h"

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

// Sums (or maxes) a few numbers over the ranks of `comm`, in fp32.
std::vector<float> reduce_values(Communicator& comm, std::vector<float> v, ReduceOp op) {
  if (comm.size() > 1) comm.all_reduce(v.data(), v.data(), v.size(), DType::fp32, op).wait();
  return v;
}

// mem (SPEC section 4): bytes per category on the largest rank, from the tracked allocator
// (what is resident), plus where each category lives and the bytes kept on NVMe.
nlohmann::json mem_json(Communicator& world, const nlohmann::json& where, int64_t nvme_bytes) {
  MemStats s = mem_stats();
  auto c = [&](MemCategory k) { return (float)s.current[(int)k]; };
  std::vector<float> v =
      reduce_values(world,
                    {c(MemCategory::params), c(MemCategory::grads), c(MemCategory::optim),
                     (float)s.peak[(int)MemCategory::activations],
                     (float)s.peak[(int)MemCategory::buffers], (float)s.total_peak},
                    ReduceOp::max);
  nlohmann::json j = {{"params", (int64_t)v[0]},  {"grads", (int64_t)v[1]},
                      {"optim", (int64_t)v[2]},   {"activations", (int64_t)v[3]},
                      {"buffers", (int64_t)v[4]}, {"peak", (int64_t)v[5]},
                      {"location", where}};
  if (nvme_bytes > 0) {
    std::vector<float> n = reduce_values(world, {(float)nvme_bytes}, ReduceOp::max);
    j["nvme"] = (int64_t)n[0];
  }
  return j;
}

// Where each memory category lives: "device" is the memory compute runs in (host memory on
// --device cpu), "host" offloaded to CPU memory, "nvme" offloaded to --nvme-dir.
nlohmann::json mem_locations(const TrainOptions& o) {
  auto loc = [](const std::string& off) {
    return off == "none" ? "device" : off == "cpu" ? "host" : "nvme";
  };
  return {{"params", loc(o.offload_params)},
          {"grads", "device"},
          {"optim", loc(o.offload_optimizer)},
          {"activations", "device"},
          {"buffers", "device"}};
}

nlohmann::json comm_json(const CommStats& d, double exposed_ms) {
  auto b = [&](CommKind k) { return d.bytes[(int)k]; };
  return {{"allgather_bytes", b(CommKind::allgather)},
          {"reduce_scatter_bytes", b(CommKind::reduce_scatter)},
          {"allreduce_bytes", b(CommKind::allreduce)},
          {"p2p_bytes", b(CommKind::p2p)},
          {"alltoall_bytes", b(CommKind::alltoall)},
          {"exposed_ms", exposed_ms}};
}

// Every rank's string, on every rank (sizes first, then the bytes, over all_gather).
std::vector<std::string> gather_strings(Communicator& comm, const std::string& mine) {
  const int n = comm.size();
  std::vector<int64_t> sizes(n);
  int64_t my = (int64_t)mine.size();
  const std::vector<size_t> eight(n, 8);
  comm.all_gather(&my, sizes.data(), eight, DType::int8).wait();
  std::vector<size_t> counts(sizes.begin(), sizes.end());
  std::string all;
  for (int64_t c : sizes) all.resize(all.size() + (size_t)c);
  comm.all_gather(mine.data(), all.data(), counts, DType::int8).wait();
  std::vector<std::string> out;
  size_t off = 0;
  for (int64_t c : sizes) out.push_back(all.substr(off, (size_t)c)), off += (size_t)c;
  return out;
}

}  // namespace

int run_training(const TrainOptions& o, const ProcessContext& ctx) {
  const ModelConfig& mc = o.model;
  const bool rank0 = ctx.rank() == 0;
  std::unique_ptr<Communicator> world = make_world_communicator();
  ProcessGrid grid(*world, o.tp, o.pp, o.ep);
  Communicator& dp = grid.dp();
  const int ndp = dp.size(), rdp = dp.rank();

  DataPaths paths = resolve_data(o);
  TokenFile train = read_token_file(paths.train, mc.vocab);
  Sampler sampler((int64_t)train.tokens.size(), mc.seq_len, o.seed, paths.train);
  TokenFile val;
  if (!paths.val.empty()) val = read_token_file(paths.val, mc.vocab);
  if (!o.trace.empty()) Tracer::get().enable(ctx.rank());

  Model model(mc, o.seed);
  std::unique_ptr<ShardStore> store;  // NVMe offload; outlives the engine
  if (o.offload_optimizer == "nvme" || o.offload_params == "nvme")
    store = std::make_unique<ShardStore>(o.nvme_dir, ctx.rank());
  ZeroOptions zo;
  zo.store = store.get();
  zo.optim_in_store = o.offload_optimizer == "nvme";
  zo.params_in_store = o.offload_params == "nvme";
  zo.store_buffer_bytes = (int64_t)(o.nvme_buffer_mb * (1 << 20));
  zo.stage = o.zero_stage;
  zo.overlap = o.overlap == "on";
  zo.bucket_mb = o.bucket_mb;
  zo.prefetch = o.prefetch_layers;
  zo.precision = dtype_from_name(o.precision);
  ZeroEngine engine(model, grid, zo);
  std::unique_ptr<TrainStep> train_step = make_data_parallel_step(model, engine);
  MetricsWriter metrics(rank0 ? o.metrics : "");  // after the set-up: a failed start writes nothing

  const int B = o.micro_batch, T = mc.seq_len;
  const int64_t G = (int64_t)B * o.grad_accum * ndp;  // samples per global batch
  const ParamCounts counts = count_params(model.table, mc);
  const double flops_per_token = counts.flops_per_token;
  const nlohmann::json layout = {{"world", ctx.world()}, {"dp", ndp},
                                 {"tp", o.tp},           {"pp", o.pp},
                                 {"ep", o.ep},           {"zero_stage", o.zero_stage}};
  const nlohmann::json where = mem_locations(o);
  if (rank0) {
    std::printf(
        "zerotrain train: %lld parameters (%lld active per token), %lld train tokens, "
        "%lld samples of %d tokens per step, %d rank(s), ZeRO stage %d, %s\n",
        (long long)counts.params, (long long)counts.active, (long long)train.tokens.size(),
        (long long)G, T, ctx.world(), o.zero_stage, o.precision.c_str());
    if (store)
      std::printf("zerotrain train: offloading%s%s to %s (%g MB resident at most)\n",
                  zo.optim_in_store ? " optimizer state" : "",
                  zo.params_in_store ? (zo.optim_in_store ? " and parameters" : " parameters") : "",
                  store->where().c_str(), o.nvme_buffer_mb);
    std::fflush(stdout);
  }

  TrainState state;
  state.train = {{"seed", o.seed},
                 {"micro_batch", o.micro_batch},
                 {"grad_accum", o.grad_accum},
                 {"samples_per_step", G},
                 {"steps", o.steps},
                 {"lr", o.lr},
                 {"min_lr", o.min_lr},
                 {"warmup_steps", o.warmup_steps},
                 {"data", paths.train}};
  std::string resume_from;
  if (o.resume == "auto" && !o.ckpt_dir.empty())
    resume_from = find_latest_checkpoint(o.ckpt_dir, /*report=*/rank0);
  if (o.resume != "auto" && o.resume != "none") resume_from = resolve_checkpoint(o.resume);
  if (!resume_from.empty()) {
    // Unit by unit: one unit's full state in memory at a time.
    load_checkpoint(
        resume_from, mc, model.table,
        [&](int u, const std::vector<float>& p, const std::vector<float>* m,
            const std::vector<float>* v) { engine.load_unit_state(u, p, m, v); },
        true, &state, /*verify=*/o.resume != "auto");  // auto: verified while it was chosen
    if (rank0)
      std::printf("zerotrain train: resuming from %s (step %lld)\n", resume_from.c_str(),
                  (long long)state.step);
    std::fflush(stdout);
  }

  auto run_eval = [&]() -> double {
    if (val.tokens.empty()) return NAN;
    EvalResult r =
        evaluate([&](const int32_t* t, int b, int n) { return train_step->evaluate(t, b, n); },
                 val.tokens, T, o.eval_tokens, B);
    train_step->end_evaluation();
    return r.ce;
  };
  auto checkpoint = [&]() {  // every rank writes its piece in parallel; rank 0 seals it
    if (rank0) prepare_checkpoint_dir(o.ckpt_dir, state.step);
    world->barrier().wait();
    // Unit by unit: the ranks exchange just the pieces each one writes (all_to_all), so a rank
    // holds and receives about 1/world of one unit at a time. World = dp until tp and pp exist.
    ZT_CHECK(ctx.world() == ndp, "checkpoint pieces are split over dp = world");
    std::vector<float> up, um, uv;
    RankFile mine = write_rank_file(
        checkpoint_tmp_dir(o.ckpt_dir, state.step), ctx.rank(), ctx.world(), model.table,
        [&](int u) {
          engine.checkpoint_pieces(u, up, um, uv);
          return UnitState{up.data(), um.data(), uv.data(), true};
        },
        state.step);
    std::vector<std::string> sums =
        gather_strings(*world, std::to_string(mine.bytes) + " " + std::to_string(mine.checksum));
    if (rank0) {
      std::vector<RankFile> files;
      for (int r = 0; r < ctx.world(); ++r) {
        char name[32];
        std::snprintf(name, sizeof name, "rank_%05d.h5", r);
        RankFile f{name, 0, 0};
        std::sscanf(sums[r].c_str(), "%lu %lu", &f.bytes, &f.checksum);
        files.push_back(f);
      }
      finish_checkpoint(o.ckpt_dir, files, mc, model.table, state, layout, o.keep_last);
    }
    world->barrier().wait();  // nobody runs ahead of a failed write
  };
  install_stop_handlers();
  Progress progress(o.steps, ctx.info().launcher == "none");
  std::vector<int32_t> batch((size_t)B * (T + 1));
  double last_val = NAN;
  for (int64_t step = state.step; step < o.steps; ++step) {
    double t0 = now_ms();
    CommStats c0 = comm_stats();
    const StoreCounters io0 = store ? store->counters() : StoreCounters{};
    // This rank's microbatch i: samples [step*G + (rank*accum + i)*B, +B) of the stream.
    auto microbatch = [&](int i) {
      const int64_t first = step * G + ((int64_t)rdp * o.grad_accum + i) * B;
      for (int b = 0; b < B; ++b) {
        int64_t start = sampler.start(first + b);
        for (int t = 0; t <= T; ++t) batch[(size_t)b * (T + 1) + t] = train.tokens[start + t];
      }
      return batch.data();
    };
    StepLosses sl =
        train_step->run(o.grad_accum, microbatch, B, T, 1.0f / (float)(o.grad_accum * ndp));
    double ce = sl.ce, aux = sl.aux, dropped = (double)sl.dropped;
    // Losses of the global batch, and whether any rank was asked to stop (SIGTERM / SIGUSR1).
    // Over the world: every rank must see the stop; world = dp until tp and pp exist.
    std::vector<float> sums = reduce_values(
        *world, {(float)ce, (float)aux, (float)dropped, stop_requested() ? 1.0f : 0.0f},
        ReduceOp::sum);
    const double n_micro = (double)o.grad_accum * ctx.world();
    ce = sums[0] / n_micro, aux = sums[1] / n_micro;
    if (!std::isfinite(ce)) fail("loss became ", ce, " at step ", step + 1, " (try a lower --lr)");
    const double lr = lr_at(step, o.lr, o.min_lr, o.warmup_steps, o.steps);
    StepStats ss;
    const double t_opt = now_ms();
    {
      TraceScope ts("optimizer step");
      ss = engine.finish_step(lr, o.clip_grad, o.adamw, step + 1);
    }
    const double optimizer_ms = now_ms() - t_opt;
    const double step_ms = now_ms() - t0;
    CommStats dc = comm_stats() - c0;
    state.step = step + 1;
    state.tokens = state.step * G * T;

    const bool last = state.step == o.steps;
    const bool do_eval = o.eval_every > 0 && state.step % o.eval_every == 0;
    if (do_eval || (last && !val.tokens.empty())) last_val = run_eval();
    if (state.step % o.log_every == 0 || last || do_eval) {
      const double tokens = (double)G * T;
      nlohmann::json j = {{"step", state.step},
                          {"loss", ce + aux},
                          {"aux_loss", aux},
                          {"lr", lr},
                          {"grad_norm", ss.grad_norm},
                          {"tokens", state.tokens},
                          {"step_ms", step_ms},
                          {"tokens_per_s", tokens / (step_ms / 1000)},
                          {"flops_per_s", tokens * flops_per_token / (step_ms / 1000)},
                          {"dropped", (int64_t)sums[2]},
                          {"mem", mem_json(*world, where, store ? store->stored_bytes() : 0)},
                          {"comm", comm_json(dc, ss.exposed_ms)},
                          {"layout", layout}};
      if (store) {  // this rank's (rank 0's) traffic with its shard file in the step
        StoreCounters io = store->counters();
        j["offload"] = {{"read_bytes", io.read_bytes - io0.read_bytes},
                        {"write_bytes", io.write_bytes - io0.write_bytes},
                        {"io_busy_ms", io.busy_ms - io0.busy_ms},
                        {"io_wait_ms", ss.io_wait_ms},
                        {"optimizer_ms", optimizer_ms}};
      }
      if (do_eval || (last && std::isfinite(last_val))) j["val_loss"] = last_val;
      if (zo.precision == DType::fp16) {
        j["loss_scale"] = ss.loss_scale;
        j["skipped_steps"] = engine.skipped_steps();
      }
      if (rank0) {
        metrics.write(j);
        char line[256];
        std::snprintf(line, sizeof line, "loss %.4f lr %.2e gnorm %.3f %.0f tok/s %.1f GFLOP/s%s",
                      ce + aux, lr, ss.grad_norm, tokens / (step_ms / 1000),
                      tokens * flops_per_token / step_ms / 1e6,
                      std::isfinite(last_val) && (do_eval || last)
                          ? (" val " + std::to_string(last_val).substr(0, 6)).c_str()
                          : "");
        progress.update(state.step, line);
      }
    }
    const bool preempted = sums[3] > 0 && !last;
    if (!o.ckpt_dir.empty() &&
        ((o.ckpt_every > 0 && state.step % o.ckpt_every == 0) || last || preempted))
      checkpoint();
    if (preempted) {
      if (rank0) {
        progress.finish();
        std::printf("zerotrain train: stop requested by a signal: %s after step %lld, exiting\n",
                    o.ckpt_dir.empty() ? "no --ckpt-dir, nothing saved" : "checkpoint written",
                    (long long)state.step);
        std::fflush(stdout);
      }
      return 0;
    }
  }
  if (!o.trace.empty()) {
    std::vector<std::string> events = gather_strings(*world, Tracer::get().events_json());
    if (rank0) write_trace_file(o.trace, events);
  }
  if (!rank0) return 0;
  progress.finish();
  nlohmann::json done = {{"event", "done"}, {"steps", state.step}};
  if (std::isfinite(last_val)) done["val_loss"] = last_val;
  metrics.write(done);
  if (std::isfinite(last_val))
    std::printf("validation loss %.4f after %lld steps\n", last_val, (long long)state.step);
  return 0;
}

}  // namespace zt
