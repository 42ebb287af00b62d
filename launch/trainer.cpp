// trainer.cpp: the training loop. Everything it drives is built in train_setup.cpp; each step's
// forward and backward passes run in the train step (parallel/step/), the update in the ZeRO
// engine, and the metrics line comes from step_metrics.cpp.
#include "launch/trainer.h"

#include <cmath>
#include <cstdio>

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

int run_training(const TrainOptions& o, const ProcessContext& ctx) {
  std::unique_ptr<TrainRun> run = set_up_training(o, ctx);
  TrainRun& r = *run;
  resume_training(r);
  check_first_step_data(r);
  MetricsWriter metrics(r.rank0() ? o.metrics
                                  : "");  // after the set-up: a failed start writes nothing
  install_stop_handlers();
  Progress progress(o.steps, ctx.info().launcher == "none", r.state.step);
  const int64_t first_step = r.state.step;
  // The head of the metrics file: what ran, where (build facts, layout, flags).
  metrics.write({{"event", "start"},
                 {"build", build_info()},
                 {"layout", r.layout},
                 {"train", r.state.train},
                 {"first_step", r.state.step}});
  double best_val = NAN;
  int64_t best_step = 0;
  std::string last_ckpt;
  const int B = o.micro_batch, T = o.model.seq_len;
  std::vector<int32_t> batch((size_t)B * (T + 1));
  double last_val = NAN;

  for (int64_t step = r.state.step; step < o.steps; ++step) {
    test_fault_point(step, ctx.rank());  // ZT_TEST_FAULT only (runtime/fault.h)
    StepRecord rec;
    const double t0 = now_ms();
    const CommStats comm0 = comm_stats();
    const StoreCounters io0 = r.store ? r.store->counters() : StoreCounters{};

    // Forward and backward of this rank's microbatches, then the losses of the global batch.
    auto microbatch = [&](int i) {
      fill_samples(*r.sampler, r.train, first_sample(step, B, o.grad_accum, r.dp(), r.dp_rank(), i),
                   B, T, batch.data());
      return batch.data();
    };
    const StepLosses losses = r.step->run(o.grad_accum, microbatch, B, T);
    rec.passes_ms = now_ms() - t0, rec.wait_ms = r.step->wait_ms();
    const bool stop = any_rank(*r.world, stop_requested());  // SIGTERM / SIGUSR1 on any rank
    if (!std::isfinite(losses.ce))
      fail("loss became ", losses.ce, " at step ", step + 1, " (try a lower --lr)");

    // The update: clip, AdamW on this rank's shard, parameters re-assembled.
    rec.lr = lr_at(step, o.lr, o.min_lr, o.warmup_steps, o.steps);
    const double t_opt = now_ms();
    {
      TraceScope ts("optimizer step");
      rec.stats = r.engine->finish_step(rec.lr, o.clip_grad, o.adamw, step + 1);
    }
    rec.optimizer_ms = now_ms() - t_opt;
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
    if (r.state.step % o.log_every == 0 || last || do_eval) {
      const nlohmann::json line = step_metrics(r, rec);  // collective
      if (r.rank0()) {
        metrics.write(line);
        progress.update(r.state.step, progress_figures(r, rec, line));
      }
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
      }
      return 0;
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
  return 0;
}

}  // namespace zt
