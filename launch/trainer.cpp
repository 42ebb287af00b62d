// trainer.cpp: the training loop. Everything it drives is built in train_setup.cpp; each step's
// forward and backward passes run in the train step (parallel/step/), the update in the ZeRO
// engine, and the metrics line comes from step_metrics.cpp.
#include "launch/trainer.h"

#include <cmath>
#include <cstdio>
#include <deque>
#include <set>

#include "launch/build_info.h"
#include "launch/step_metrics.h"
#include "launch/train_setup.h"
#include "optim/lr_schedule.h"
#include "parallel/comm/gather.h"
#include "runtime/error.h"
#include "runtime/fault.h"
#include "runtime/metrics.h"
#include "runtime/options.h"
#include "runtime/signals.h"
#include "runtime/trace.h"

namespace zt {

namespace {

// --status-file: how the run ended, written whole (a temporary file renamed into place).
void write_status(const std::string& path, const char* how, int64_t step) {
  if (path.empty()) return;
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  const bool ok = f && std::fprintf(f, "%s %lld\n", how, (long long)step) > 0;
  if (f && std::fclose(f) != 0) f = nullptr;
  if (!ok || !f || std::rename(tmp.c_str(), path.c_str()) != 0)
    fail("cannot write --status-file '", path, "'");
}

}  // namespace

int run_training(const TrainOptions& o, const ProcessContext& ctx) {
  // Not ended yet: a run that fails from here on, set-up included, leaves no status behind.
  if (ctx.rank() == 0 && !o.status_file.empty()) std::remove(o.status_file.c_str());
  std::unique_ptr<TrainRun> run = set_up_training(o, ctx);
  TrainRun& r = *run;
  resume_training(r);
  check_first_step_data(r);
  // After the set-up (a failed start writes nothing); a resumed run appends to the file.
  MetricsWriter metrics(r.rank0() ? o.metrics : "", r.state.step > 0);
  install_stop_handlers(parse_preempt_signals(o.preempt_signal));
  Progress progress(o.steps, ctx.info().launcher == "none", r.state.step);
  const int64_t first_step = r.state.step;
  // The head of the metrics file: what ran, where (build facts, layout, flags).
  const nlohmann::json ranks = rank_placement(r);
  metrics.write({{"event", "start"},
                 {"build", build_info()},
                 {"layout", r.layout},
                 {"device", r.device},
                 {"ranks", ranks},
                 {"train", r.state.train},
                 {"first_step", r.state.step}});
  double best_val = NAN;
  int64_t best_step = 0;
  std::string last_ckpt;
  const int B = o.micro_batch, T = o.model.seq_len;
  std::vector<int32_t> batch;  // fill_microbatch sizes it
  double last_val = NAN;
  // Steps with a metrics line (besides evaluations and events).
  auto logged = [&](int64_t done) { return done % o.log_every == 0 || done == o.steps; };

  // --on-nonfinite / --spike-factor: the losses of the last good steps, and the steps a rollback
  // steps past (kept in the checkpoints' train state, so a resumed run steps past them too).
  std::deque<double> recent;
  std::set<int64_t> skip_steps;
  auto load_skips = [&] {
    for (const auto& s : r.state.train.value("skip_steps", nlohmann::json::array()))
      skip_steps.insert(s.get<int64_t>());
  };
  load_skips();

  for (int64_t step = r.state.step; step < o.steps; step = r.state.step) {
    test_fault_point(step, ctx.rank());  // ZT_TEST_FAULT only (runtime/fault.h)
    StepRecord rec;
    const CommStats comm0 = comm_stats();
    const StoreCounters io0 = r.store ? r.store->counters() : StoreCounters{};
    const double t0 = now_ms();
    bool bad = false;
    StepLosses losses{NAN, NAN, 0, {}};
    if (skip_steps.count(step)) {  // the batch a rollback steps past: no passes, no update
      rec.event = "skipped";
      if (r.rank0())
        std::printf("zerotrain train: step %lld: stepping past the batch of a rollback\n",
                    (long long)step + 1);
    } else {
      // Forward and backward of this rank's microbatches, then the losses of the global batch.
      auto microbatch = [&](int i) { return fill_microbatch(r, step, i, batch); };
      const float grad_scale = test_fault_nan(step, ctx.rank()) ? NAN : 1.0f;  // test hook
      prepare_qat_step(r, /*measure=*/logged(step + 1));
      losses = r.step->run(o.grad_accum, microbatch, B, T, grad_scale);
      rec.qat = end_qat_step(r);
      rec.passes_ms = now_ms() - t0, rec.wait_ms = r.step->wait_ms();

      // A bad step (non-finite loss or gradient norm, or a loss spike) makes no update; the
      // losses and the norm are the same on every rank, so every rank decides the same.
      const double loss = losses.ce + losses.aux;
      double mean = 0;
      for (double x : recent) mean += x / (double)recent.size();
      const bool spike = o.spike_factor > 0 && recent.size() >= 5 && loss > o.spike_factor * mean;
      const bool bad_loss = !std::isfinite(loss) || spike;

      // The update: clip, AdamW on this rank's shard, parameters re-assembled.
      rec.lr = lr_at(step, o.lr, o.min_lr, o.warmup_steps, o.steps);
      const double t_opt = now_ms();
      {
        TraceScope ts("optimizer step");
        rec.stats = r.engine->finish_step(rec.lr, o.clip_grad, o.adamw, step + 1,
                                          {/*skip=*/bad_loss, /*skip_nonfinite=*/true});
      }
      rec.optimizer_ms = now_ms() - t_opt;
      bad = bad_loss || !std::isfinite(rec.stats.grad_norm);
      if (bad) {
        rec.event = o.on_nonfinite == "skip"       ? "skipped"
                    : o.on_nonfinite == "rollback" ? "rolled_back"
                                                   : "stopped";
        if (r.rank0())
          std::printf("zerotrain train: step %lld: %s (loss %g, gradient norm %g): %s\n",
                      (long long)step + 1, spike ? "loss spike" : "non-finite loss or gradient",
                      loss, rec.stats.grad_norm, rec.event.c_str());
      }
      // The running mean follows every finite loss, skipped spikes included: one spike is
      // skipped, a lasting change of level becomes the new mean within a few steps.
      if (std::isfinite(loss)) recent.push_back(loss);
      if (recent.size() > 20) recent.pop_front();
    }
    const bool stop = any_rank(*r.world, stop_requested());  // a --preempt-signal on any rank
    rec.step_ms = now_ms() - t0;
    rec.comm = comm_stats() - comm0;
    if (r.store) rec.io = r.store->counters() - io0;
    r.state.step = rec.step = step + 1;
    r.state.tokens = rec.tokens = r.state.step * r.samples_per_step * T;
    rec.ce = losses.ce, rec.aux = losses.aux, rec.dropped = losses.dropped, rec.load = losses.load;

    // Validation, the metrics line, checkpoints, and a requested stop.
    const bool last = r.state.step == o.steps;
    const bool do_eval = o.eval_every > 0 && r.state.step % o.eval_every == 0;
    if (do_eval || (last && !r.val.empty())) rec.val_loss = last_val = validation_loss(r);
    if (std::isfinite(rec.val_loss) && !(rec.val_loss >= best_val))
      best_val = rec.val_loss, best_step = r.state.step;
    if (logged(r.state.step) || do_eval || !rec.event.empty()) {
      const nlohmann::json line = step_metrics(r, rec);  // collective
      if (r.rank0()) {
        metrics.write(line);
        progress.update(r.state.step, progress_figures(r, rec, line));
      }
    }
    if (bad && o.on_nonfinite == "rollback") {  // back to the newest checkpoint, past this batch
      skip_steps.insert(step);
      rollback_training(r);
      load_skips();
      nlohmann::json skips = nlohmann::json::array();
      for (int64_t k : skip_steps) skips.push_back(k);
      r.state.train["skip_steps"] = skips;
      recent.clear();
      continue;
    }
    if (bad && o.on_nonfinite == "stop") {
      if (!o.ckpt_dir.empty()) last_ckpt = checkpoint_training(r);
      if (r.rank0()) {
        progress.finish();
        std::printf("zerotrain train: stopped at step %lld (--on-nonfinite stop)%s\n",
                    (long long)r.state.step,
                    last_ckpt.empty() ? "" : cat("; checkpoint ", last_ckpt).c_str());
        std::fflush(stdout);
      }
      return 1;
    }
    const bool preempted = stop && !last;
    if (!o.ckpt_dir.empty() &&
        ((o.ckpt_every > 0 && r.state.step % o.ckpt_every == 0) || last || preempted))
      last_ckpt = checkpoint_training(r);
    if (preempted) {
      if (r.rank0()) {
        progress.finish();
        std::printf("zerotrain train: stop requested by a signal: %s after step %lld, exiting\n",
                    o.ckpt_dir.empty() ? "no --ckpt-dir, nothing saved" : "checkpoint written",
                    (long long)r.state.step);
        std::fflush(stdout);
        write_status(o.status_file, o.ckpt_dir.empty() ? "interrupted" : "stopped", r.state.step);
      }
      return o.preempt_exit_code;
    }
  }

  if (!o.trace.empty()) {
    std::vector<std::string> events = gather_strings(*r.world, Tracer::get().events_json());
    if (r.rank0()) write_trace_file(o.trace, events);
  }
  if (!r.rank0()) return 0;
  progress.finish();
  nlohmann::json done = {{"event", "done"}, {"steps", r.state.step}};
  if (std::isfinite(last_val)) done["val_loss"] = last_val;
  metrics.write(done);
  if (std::isfinite(last_val))
    std::printf("validation loss %.4f after %lld steps\n", last_val, (long long)r.state.step);
  // The run in one line: what it trained, how fast, how well, where it is saved.
  const double secs = progress.elapsed_s();
  const double tokens = (double)(r.state.step - first_step) * r.samples_per_step * T;
  std::string summary = cat("zerotrain train: done: ", r.state.step - first_step, " steps, ",
                            (int64_t)tokens, " tokens in ", human_duration(secs), " (",
                            (int64_t)std::llround(tokens / std::max(secs, 1e-9)), " tok/s)");
  if (std::isfinite(best_val))
    summary += cat(", best val loss ", show_number(best_val), " at step ", best_step);
  summary += last_ckpt.empty() ? ", no checkpoint (no --ckpt-dir)" : ", checkpoint " + last_ckpt;
  std::printf("%s\n", summary.c_str());
  write_status(o.status_file, "finished", r.state.step);
  return 0;
}

}  // namespace zt
