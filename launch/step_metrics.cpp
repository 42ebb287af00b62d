// step_metrics.cpp: the metrics line of a step and its progress figures (step_metrics.h).
#include "launch/step_metrics.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "parallel/comm/gather.h"
#include "runtime/alloc.h"
#include "runtime/device.h"
#include "runtime/metrics.h"

namespace zt {
namespace {

// Where each memory category lives: "device" is the memory compute runs in (host memory on
// --device cpu), "host" offloaded to CPU memory, "nvme" offloaded to --nvme-dir. With --device
// cuda the engine's state is in host memory (the GPU's copies are mem.gpu).
nlohmann::json mem_locations(const TrainOptions& o) {
  auto loc = [&](const std::string& off) {
    return off == "nvme" ? "nvme" : off == "cpu" || o.device == "cuda" ? "host" : "device";
  };
  const char* engine = o.device == "cuda" ? "host" : "device";  // gradients, gathered units
  return {{"params", loc(o.offload_params)},
          {"grads", engine},
          {"optim", loc(o.offload_optimizer)},
          {"activations", "device"},
          {"buffers", engine}};
}

// mem: bytes per category on the largest rank, from the tracked allocator (what is resident;
// activations and buffers at their peak), where each category lives, and the bytes on NVMe.
nlohmann::json mem_json(TrainRun& run) {
  const MemStats s = mem_stats();
  auto cur = [&](MemCategory k) { return s.current[(int)k]; };
  auto peak = [&](MemCategory k) { return s.peak[(int)k]; };
  const int64_t nvme = run.store ? run.store->stored_bytes() : 0;
  const std::vector<int64_t> v = max_exact(
      *run.world, {cur(MemCategory::params), cur(MemCategory::grads), cur(MemCategory::optim),
                   peak(MemCategory::activations), peak(MemCategory::buffers), s.total_peak, nvme});
  nlohmann::json j = {{"params", v[0]},
                      {"grads", v[1]},
                      {"optim", v[2]},
                      {"activations", v[3]},
                      {"buffers", v[4]},
                      {"peak", v[5]},
                      {"location", mem_locations(run.o)}};
  if (run.store) j["nvme"] = v[6];
  if (run.device == "cuda") {
    // The GPU's own: the passes' parameter and gradient copies, activations, the device's peak.
    const MemStats g = device_mem_stats(DeviceKind::cuda);
    auto gpu = [&](MemCategory k, bool high) { return (high ? g.peak : g.current)[(int)k]; };
    const std::vector<int64_t> w =
        max_exact(*run.world, {gpu(MemCategory::params, false), gpu(MemCategory::grads, false),
                               gpu(MemCategory::activations, true), g.total_peak});
    j["gpu"] = {{"params", w[0]}, {"grads", w[1]}, {"activations", w[2]}, {"peak", w[3]}};
  }
  return j;
}

nlohmann::json comm_json(const CommStats& d, double exposed_ms) {
  auto b = [&](CommKind k) { return d.bytes[(int)k]; };
  return {{"allgather_bytes", b(CommKind::allgather)},
          {"reduce_scatter_bytes", b(CommKind::reduce_scatter)},
          {"allreduce_bytes", b(CommKind::allreduce)},
          {"p2p_bytes", b(CommKind::p2p)},
          {"alltoall_bytes", b(CommKind::alltoall)},
          {"control_bytes", b(CommKind::control)},
          {"exposed_ms", exposed_ms}};
}

// pipeline: the fraction of the step's forward and backward passes each stage sat idle waiting for
// its neighbours (rank 0's stage as "bubble", every stage's in "stages"). Collective over pp.
nlohmann::json pipeline_json(TrainRun& run, const StepRecord& r, const char* schedule) {
  const std::vector<double> b =
      gather_values(run.grid->pp(), std::vector<double>{r.wait_ms / std::max(r.passes_ms, 1e-9)});
  return {{"bubble", b[run.grid->coord().pp]},
          {"stages", b},
          {"wait_ms", r.wait_ms},
          {"schedule", schedule}};
}

// A load's imbalance: the most-loaded expert's assignments over the mean (1 = even).
double imbalance(const int64_t* load, int n) {
  int64_t sum = 0, most = 0;
  for (int e = 0; e < n; ++e) sum += load[e], most = std::max(most, load[e]);
  return sum > 0 ? (double)most * n / (double)sum : 1;
}

// moe: the assignments per expert over the step (every MoE block, every rank); each MoE block's
// per expert and its imbalance; and the imbalance: the worst block's, which is what an expert-
// parallel step waits on (the rank of that block's busiest expert).
nlohmann::json moe_json(const TrainRun& run, const std::vector<int64_t>& load) {
  const ModelConfig& c = run.o.model;
  std::vector<int64_t> total(c.experts, 0);
  nlohmann::json blocks = nlohmann::json::array(), per = nlohmann::json::array();
  double worst = 1;
  for (int l = 0; l < c.layers; ++l) {
    if (!c.is_moe(l)) continue;
    const int64_t* b = load.data() + (int64_t)l * c.experts;
    for (int e = 0; e < c.experts; ++e) total[e] += b[e];
    const double imb = imbalance(b, c.experts);
    blocks.push_back(std::vector<int64_t>(b, b + c.experts));
    per.push_back(imb);
    worst = std::max(worst, imb);
  }
  return {{"load", total}, {"imbalance", worst}, {"block_load", blocks}, {"block_imbalance", per}};
}

double step_tokens(const TrainRun& run) {
  return (double)run.samples_per_step * run.o.model.seq_len;
}

}  // namespace

nlohmann::json step_metrics(TrainRun& run, const StepRecord& r) {
  const double tokens = step_tokens(run), per_s = 1000.0 / r.step_ms;
  nlohmann::json j = {{"step", r.step},
                      {"loss", r.ce + r.aux},
                      {"aux_loss", r.aux},
                      {"lr", r.lr},
                      {"grad_norm", r.stats.grad_norm},
                      {"tokens", r.tokens},
                      {"step_ms", r.step_ms},
                      {"tokens_per_s", tokens * per_s},
                      {"flops_per_s", tokens * run.counts.flops_per_token * per_s},
                      {"dropped", r.dropped},
                      {"mem", mem_json(run)},
                      {"comm", comm_json(r.comm, r.comm.exposed_ms)},
                      {"layout", run.layout}};
  if (run.store)
    j["offload"] = {{"read_bytes", r.io.read_bytes},
                    {"write_bytes", r.io.write_bytes},
                    {"io_busy_ms", r.io.busy_ms},
                    {"io_wait_ms", r.stats.io_wait_ms},
                    {"optimizer_ms", r.optimizer_ms}};
  if (const char* schedule = run.step->schedule_name())
    j["pipeline"] = pipeline_json(run, r, schedule);
  if (!r.load.empty()) j["moe"] = moe_json(run, r.load);
  if (run.o.model.qat.on()) j["qat"] = qat_metrics(run, r.qat);
  if (!r.event.empty()) j["event"] = r.event;
  if (std::isfinite(r.val_loss)) j["val_loss"] = r.val_loss;
  if (run.o.precision == "fp16") {
    j["loss_scale"] = r.stats.loss_scale;
    j["skipped_steps"] = run.engine->skipped_steps();
  }
  return j;
}

std::string progress_figures(const TrainRun& run, const StepRecord& r, const nlohmann::json& line) {
  const double tokens = step_tokens(run);
  char buf[256];
  std::snprintf(buf, sizeof buf, "loss %.4f lr %.2e gnorm %.3f %.0f tok/s %.1f GFLOP/s",
                r.ce + r.aux, r.lr, r.stats.grad_norm, tokens / (r.step_ms / 1000),
                tokens * run.counts.flops_per_token / r.step_ms / 1e6);
  std::string s = buf;
  if (line.contains("moe")) {  // the metrics line's, computed once
    std::snprintf(buf, sizeof buf, " imb %.2f", line["moe"]["imbalance"].get<double>());
    s += buf;
  }
  s += " mem " + human_bytes((double)line["mem"]["peak"].get<int64_t>());
  if (std::isfinite(r.val_loss)) {
    std::snprintf(buf, sizeof buf, " val %.4f", r.val_loss);
    s += buf;
  }
  return s;
}

nlohmann::json rank_placement(const TrainRun& r) {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "?");
  const nlohmann::json mine = {
      {"host", host}, {"local_rank", r.ctx.info().local_rank}, {"threads", omp_get_max_threads()}};
  nlohmann::json all = nlohmann::json::array();
  for (const std::string& s : gather_strings(*r.world, mine.dump()))
    all.push_back(nlohmann::json::parse(s));
  return all;
}

}  // namespace zt
