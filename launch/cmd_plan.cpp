// cmd_plan.cpp: `zerotrain plan` (SPEC section 8): every valid layout of --world ranks for a model
// and batch, with its predicted memory per rank, traffic per step and step time, ranked; the
// `train` flags of the best. The figures come from parallel/plan/ (layout_plan.h).
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "launch/bench_gemm.h"
#include "launch/command.h"
#include "launch/train_options.h"
#include "parallel/comm/comm.h"
#include "parallel/plan/layout_plan.h"
#include "runtime/error.h"
#include "runtime/metrics.h"
#include "runtime/process.h"

namespace zt {
namespace {

const char* kPlanExamples = R"(Examples:
  zerotrain plan --world 8 --mem-gb 4
  zerotrain plan --layers 32 --model-dim 4096 --heads 32 --ffn-dim 11008 --experts 0 \
                 --dense-layers 32 --vocab 32000 --seq-len 4096 --micro-batch 1 \
                 --grad-accum 16 --precision bf16 --device cuda --world 64 --mem-gb 80
  mpirun -np 2 zerotrain plan --world 8 --calibrate     (measures GEMM and all-reduce rates)
Details: docs/tuning.md.)";

struct PlanFlags {
  PlanRun run;
  int world = 0;
  double mem_gb = 0;
  PlanLimits limits;
  std::string precision = "fp32", offload = "on", sequence_parallel = "on";
  bool json = false, calibrate = false;
  int top = 15;
};

// The flags given (on the command line or in --config) that `train` takes as they are (the model,
// the batch, the precision), for the best layout's command.
std::string given_flags(const po::variables_map& vm, const po::options_description& groups) {
  std::string out;
  for (const auto& o : groups.options()) {
    const std::string& name = o->long_name();
    if (!vm.count(name) || vm[name].defaulted()) continue;
    const boost::any& v = vm[name].value();
    if (const bool* b = boost::any_cast<bool>(&v)) {
      if (*b) out += " --" + name;
    } else if (const int* i = boost::any_cast<int>(&v)) {
      out += " --" + name + " " + std::to_string(*i);
    } else if (const double* d = boost::any_cast<double>(&v)) {
      out += " --" + name + " " + show_number(*d);
    } else if (const std::string* t = boost::any_cast<std::string>(&v)) {
      out += " --" + name + " " + *t;
    }
  }
  return out;
}

// --calibrate: the GEMM rate of one rank at the model's shapes, and with more than one rank
// (under mpirun / srun) the bus bandwidth of a world all-reduce.
PlanRates calibrate(const PlanRun& run, PlanRates r) {
  const ModelConfig& m = run.model;
  const int N = run.micro_batch * m.seq_len;
  const int hid = std::max({m.ffn_dim, m.expert_ffn_dim, 1});
  const double g1 = measure_gemm(DeviceKind::cpu, N, hid, m.model_dim, 1);
  const double g2 = measure_gemm(DeviceKind::cpu, N, m.model_dim, hid, 1);
  r.flops = 0.5 * (g1 + g2) * 1e9 * 0.7;  // a step runs more than its GEMMs (measured: 0.6-0.8)
  r.source = "gemm measured";
  std::unique_ptr<Communicator> world = make_world_communicator();
  if (world->size() > 1) {
    const size_t count = size_t(4) << 20;  // 16 MiB of fp32
    std::vector<float> buf(count, 1.0f);
    world->all_reduce(buf.data(), buf.data(), count, DType::fp32, ReduceOp::sum).wait();
    const CommStats s0 = world->stats();
    const double t0 = now_ms();
    for (int i = 0; i < 3; ++i)
      world->all_reduce(buf.data(), buf.data(), count, DType::fp32, ReduceOp::sum).wait();
    const double sec = (now_ms() - t0) / 1e3;
    const double bytes = (double)(world->stats() - s0).bytes[(int)CommKind::allreduce];
    r.intra_bw = r.inter_bw = bytes / sec;
    r.source += ", all-reduce bandwidth measured over " + std::to_string(world->size()) + " ranks";
  } else {
    r.source += ", bandwidth default (run under mpirun to measure it)";
  }
  return r;
}

nlohmann::ordered_json layout_json(const LayoutCost& c, int rank, int world) {
  const PlanLayout& l = c.layout;
  const PlanMemory& m = c.mem;
  const PlanTraffic& t = c.comm;
  return {
      {"rank", rank},
      {"layout",
       {{"world", world},
        {"dp", l.dp},
        {"tp", l.tp},
        {"pp", l.pp},
        {"ep", l.ep},
        {"zero_stage", l.zero_stage},
        {"offload", l.offload()},
        {"sequence_parallel", l.sequence_parallel},
        {"schedule", l.pp > 1 ? l.schedule : "none"},
        {"virtual_stages", l.virtual_stages}}},
      {"mem",
       {{"params", m.params},
        {"grads", m.grads},
        {"optim", m.optim},
        {"activations", m.activations},
        {"buffers", m.buffers},
        {"peak", m.peak},
        {"host", m.host},
        {"nvme", m.nvme},
        {"comm_slots", m.comm_slots}}},
      {"comm",
       {{"allgather_bytes", t.allgather},
        {"reduce_scatter_bytes", t.reduce_scatter},
        {"allreduce_bytes", t.allreduce},
        {"p2p_bytes", t.p2p},
        {"alltoall_bytes", t.alltoall},
        {"by_source",
         {{"zero", t.zero},
          {"tensor", t.tensor},
          {"pipeline", t.pipeline},
          {"expert", t.expert}}}}},
      {"step_ms", c.time.step_ms},
      {"tokens_per_s", c.time.tokens_per_s},
      {"time",
       {{"compute_ms", c.time.compute_ms}, {"comm_ms", c.time.comm_ms}, {"bubble", c.time.bubble}}},
      {"fits", c.fits},
      {"flags", l.flags()}};
}

std::string gib(double g) {  // as the user wrote it: 0.001, 4, 80
  char b[32];
  std::snprintf(b, sizeof b, "%g", g);
  return b;
}

void print_table(const std::vector<LayoutCost>& costs, const PlanFlags& f, const PlanRates& rates,
                 const std::string& model_flags) {
  int fit = 0;
  for (const LayoutCost& c : costs) fit += c.fits;
  std::printf(
      "zerotrain plan: %zu layouts of %d ranks, %d fit %s per rank; rates: %.3g GFLOP/s "
      "per rank, %.3g GB/s (%s)\n",
      costs.size(), f.world, fit, f.mem_gb > 0 ? (gib(f.mem_gb) + " GiB").c_str() : "(no budget)",
      rates.flops / 1e9, rates.intra_bw / 1e9, rates.source.c_str());
  std::printf("%4s  %-30s %4s %9s %9s %9s %9s %9s %11s %9s %9s\n", "#", "layout", "fits", "params",
              "grads", "optim", "acts", "peak", "sent/step", "step ms", "tok/s");
  const int n = std::min<int>((int)costs.size(), f.top);
  for (int i = 0; i < n; ++i) {
    const LayoutCost& c = costs[i];
    std::printf(
        "%4d  %-30s %4s %9s %9s %9s %9s %9s %11s %9.1f %9.0f\n", i + 1, c.layout.name().c_str(),
        c.fits ? "yes" : "no", human_bytes((double)c.mem.params).c_str(),
        human_bytes((double)c.mem.grads).c_str(), human_bytes((double)c.mem.optim).c_str(),
        human_bytes((double)c.mem.activations).c_str(), human_bytes((double)c.mem.peak).c_str(),
        human_bytes((double)c.comm.total()).c_str(), c.time.step_ms, c.time.tokens_per_s);
  }
  if ((int)costs.size() > n)
    std::printf("      ... %zu more (--top N shows more, --json all)\n", costs.size() - n);
  const LayoutCost& best = costs.front();
  if (!best.fits) {
    std::printf(
        "No layout fits %s GiB per rank: the smallest peak is shown first. Raise --world "
        "or --mem-gb, or shrink the model or the batch.\n",
        gib(f.mem_gb).c_str());
    return;
  }
  std::printf(
      "Best: %s (predicted %.0f tokens/s, %.1f ms per step of %d samples, peak %s per "
      "rank)\n",
      best.layout.name().c_str(), best.time.tokens_per_s, best.time.step_ms,
      f.run.micro_batch * f.run.grad_accum * best.layout.dp,
      human_bytes((double)best.mem.peak).c_str());
  std::printf("  mpirun -np %d zerotrain train --data DIR%s %s\n", f.world, model_flags.c_str(),
              best.layout.flags().c_str());
}

int cmd_plan(int argc, char** argv) {
  PlanFlags f;
  PlanRun& run = f.run;
  po::options_description model("Model shape"), batch("Batch and precision (as for train)"),
      cluster("Cluster and search");
  add_model_flags(model, run.model);
  batch.add_options()                                                                     //
      ("micro-batch", with_default(&run.micro_batch), "samples per microbatch per rank")  //
      ("grad-accum", with_default(&run.grad_accum),
       "microbatches per step (the pipeline's microbatches with --pp)")                //
      ("precision", with_default(&f.precision), "fp32 | bf16 | fp16")                  //
      ("bucket-mb", with_default(&run.bucket_mb), "ZeRO collective chunk size (MiB)")  //
      ("prefetch-layers", with_default(&run.prefetch), "ZeRO-3 units gathered ahead");
  cluster.add_options()                                                                        //
      ("world", po::value(&f.world), "ranks the job runs on (required)")                       //
      ("mem-gb", with_default(&f.mem_gb), "memory per rank, GiB (0 = no budget)")              //
      ("device", with_default(&run.device), "cpu | cuda (default rates and offload choices)")  //
      ("tp-max", with_default(&f.limits.tp_max), "largest --tp considered (0 = any)")          //
      ("pp-max", with_default(&f.limits.pp_max), "largest --pp considered (0 = any)")          //
      ("ep-max", with_default(&f.limits.ep_max), "largest --ep considered (0 = any)")          //
      ("offload", with_default(&f.offload), "consider the offload variants: on|off")           //
      ("sequence-parallel", with_default(&f.sequence_parallel),
       "consider --sequence-parallel on with tp: on|off")  //
      ("calibrate", po::bool_switch(&f.calibrate),
       "measure the GEMM rate (and, under mpirun, the all-reduce bandwidth) instead of the "
       "defaults")                                                         //
      ("top", with_default(&f.top), "rows of the table (the best first)")  //
      ("json", po::bool_switch(&f.json), "one JSON object per layout instead of the table");
  po::options_description all;
  all.add(model).add(batch).add(cluster);
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: zerotrain plan --world N [model and batch flags]", all, vm,
                     kPlanExamples))
    return 0;
  read_model_flags(vm, run.model);
  if (!vm.count("world")) fail("--world is required (the number of ranks the job runs on)");
  require_min(vm, "world", 1);
  require_min(vm, "micro-batch", 1);
  require_min(vm, "grad-accum", 1);
  require_choice(vm, "precision", {"fp32", "bf16", "fp16"});
  require_range(vm, "bucket-mb", 0.001, 1e6);
  require_min(vm, "prefetch-layers", 0);
  require_min(vm, "mem-gb", 0);
  require_choice(vm, "device", {"cpu", "cuda"});
  for (const char* k : {"tp-max", "pp-max", "ep-max"}) require_min(vm, k, 0);
  require_choice(vm, "offload", {"on", "off"});
  require_choice(vm, "sequence-parallel", {"on", "off"});
  require_min(vm, "top", 1);
  run.precision = dtype_from_name(f.precision);
  f.limits.offload = f.offload == "on";
  f.limits.sequence_parallel = f.sequence_parallel == "on";

  ProcessContext ctx;  // one rank unless --calibrate is run under mpirun
  PlanRates rates = default_rates(run.device);
  if (f.calibrate) {
    if (run.device == "cuda")
      fail(
          "--calibrate measures this machine's CPU; with --device cuda "
          "the defaults are an H100 / H200 class GPU");
    rates = calibrate(run, rates);
  }
  if (ctx.info().rank != 0) return 0;
  const std::vector<LayoutCost> costs =
      plan_layouts(run, f.world, (int64_t)(f.mem_gb * (double)(int64_t(1) << 30)), f.limits, rates);
  if (costs.empty())
    fail("no layout of --world ", f.world,
         " ranks can run this model (every tp, pp, ep that "
         "divides it is refused; e.g. --heads, --ffn-dim and --vocab must divide by --tp, "
         "--layers must be at least --pp)");
  if (f.json) {  // in enumeration order, each with its place in the ranking ("rank")
    std::vector<size_t> by_order(costs.size());
    for (size_t i = 0; i < costs.size(); ++i) by_order[costs[i].order] = i;
    for (size_t i : by_order)
      std::printf("%s\n", layout_json(costs[i], (int)i + 1, f.world).dump().c_str());
    return 0;
  }
  print_table(costs, f, rates, given_flags(vm, model) + given_flags(vm, batch));
  return 0;
}

}  // namespace
ZT_COMMAND("plan", "predicted memory, traffic and step time of every layout; the flags of the best",
           cmd_plan);
}  // namespace zt
