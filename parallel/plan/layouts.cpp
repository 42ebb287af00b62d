// layouts.cpp: which layouts exist for a run, their flags, and the ranked plan (layout_plan.h).
#include <algorithm>
#include <sstream>

#include "model/params.h"
#include "parallel/grid.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/stages.h"
#include "parallel/plan/layout_plan.h"
#include "parallel/plan/rank_model.h"

namespace zt {

std::string PlanLayout::flags() const {
  std::ostringstream s;
  if (tp > 1) s << "--tp " << tp << ' ';
  if (sequence_parallel) s << "--sequence-parallel on ";
  if (pp > 1) {
    s << "--pp " << pp << ' ';
    if (schedule != "1f1b") s << "--pp-schedule " << schedule << ' ';
    if (virtual_stages > 1) s << "--virtual-stages " << virtual_stages << ' ';
  }
  if (ep > 1) s << "--ep " << ep << ' ';
  s << "--zero-stage " << zero_stage;
  if (offload_optimizer != "none") s << " --offload-optimizer " << offload_optimizer;
  if (offload_params != "none") s << " --offload-params " << offload_params;
  if (offload_optimizer == "nvme" || offload_params == "nvme") s << " --nvme-dir DIR";
  return s.str();
}

std::string PlanLayout::offload() const {
  if (offload_optimizer == "none" && offload_params == "none") return "none";
  if (offload_params == "none") return "optimizer:" + offload_optimizer;
  if (offload_optimizer == "none") return "params:" + offload_params;
  if (offload_optimizer == offload_params) return "optimizer+params:" + offload_params;
  return "optimizer:" + offload_optimizer + ",params:" + offload_params;
}

std::string PlanLayout::name() const {
  std::ostringstream s;
  s << "dp" << dp;
  if (tp > 1) s << " tp" << tp << (sequence_parallel ? "sp" : "");
  if (pp > 1) {
    s << " pp" << pp << ' ' << schedule;
    if (virtual_stages > 1) s << 'x' << virtual_stages;
  }
  if (ep > 1) s << " ep" << ep;
  s << " z" << zero_stage;
  if (offload() != "none") s << ' ' << offload();
  return s.str();
}

std::string plan_layout_error(const PlanLayout& l, const PlanRun& run, int world) {
  const ModelConfig& m = run.model;
  if (l.dp * l.tp * l.pp != world)
    return "dp x tp x pp = " + std::to_string(l.dp * l.tp * l.pp) + " is not the world " +
           std::to_string(world);
  if (std::string e = layout_error(world, l.tp, l.pp, l.ep, m.experts); !e.empty()) return e;
  if (std::string e = tensor_slice_error(m, l.tp); !e.empty()) return e;
  if (l.zero_stage < 0 || l.zero_stage > 3) return "--zero-stage must be 0-3";
  if (l.sequence_parallel && l.tp == 1) return "--sequence-parallel on needs --tp > 1";
  if (l.sequence_parallel && ((int64_t)run.micro_batch * m.seq_len) % l.tp != 0)
    return "--sequence-parallel on needs --micro-batch x --seq-len divisible by --tp";
  if (l.pp == 1 && l.virtual_stages > 1) return "--virtual-stages needs --pp > 1";
  if (l.pp > 1) {
    if (std::string e = pipeline_layout_error(m, l.pp, l.virtual_stages, {}); !e.empty()) return e;
    if (std::string e = pipe_schedule_error(pipe_schedule_from_name(l.schedule), l.pp,
                                            run.grad_accum, l.virtual_stages);
        !e.empty())
      return e;
  }
  for (const std::string* o : {&l.offload_optimizer, &l.offload_params})
    if (*o != "none" && *o != "cpu" && *o != "nvme") return "offload must be none, cpu or nvme";
  if (l.offload_params != "none" && l.zero_stage != 3)
    return "--offload-params needs --zero-stage 3 (below it every rank holds all parameters)";
  if (l.offload_optimizer == "nvme" || l.offload_params == "nvme")
    for (int rank : distinct_ranks(l))
      if (std::string e = rank_model(l, run, rank).plan.staging.error; !e.empty()) return e;
  return "";
}

namespace {

std::vector<int> divisors(int n) {
  std::vector<int> d;
  for (int i = 1; i <= n; ++i)
    if (n % i == 0) d.push_back(i);
  return d;
}

// The candidates of one (dp, tp, pp, ep): ZeRO stages, offload, sequence parallelism, schedules.
// Offload to cpu memory only on --device cuda (on cpu it is the memory the rank computes in).
void add_variants(std::vector<PlanLayout>& out, PlanLayout base, const PlanLimits& lim,
                  const std::string& device) {
  std::vector<std::string> targets = {"none"};
  if (lim.offload && device == "cuda") targets.push_back("cpu");
  if (lim.offload) targets.push_back("nvme");
  std::vector<PlanLayout> pipes;
  if (base.pp == 1) {
    pipes.push_back(base);
  } else {
    for (const char* s : {"1f1b", "interleaved", "zb"}) {
      PlanLayout p = base;
      p.schedule = s;
      p.virtual_stages = std::string(s) == "interleaved" ? 2 : 1;
      pipes.push_back(p);
    }
  }
  for (PlanLayout p : pipes)
    for (int sp = 0; sp <= (base.tp > 1 && lim.sequence_parallel ? 1 : 0); ++sp)
      for (int z = 0; z <= 3; ++z)
        for (const std::string& off : targets)
          for (int params = 0; params <= (z == 3 && off != "none" ? 1 : 0); ++params) {
            PlanLayout l = p;
            l.sequence_parallel = sp;
            l.zero_stage = z;
            l.offload_optimizer = off;
            l.offload_params = params ? off : "none";
            out.push_back(l);
          }
}

}  // namespace

std::vector<LayoutCost> plan_layouts(const PlanRun& given, int world, int64_t mem_bytes,
                                     const PlanLimits& lim, const PlanRates& rates) {
  PlanRun run = given;
  if (run.flops_per_token <= 0)
    run.flops_per_token = count_params(build_param_table(run.model), run.model).flops_per_token;
  std::vector<PlanLayout> cands;
  for (int tp : divisors(world)) {
    if (lim.tp_max && tp > lim.tp_max) continue;
    for (int pp : divisors(world / tp)) {
      if (lim.pp_max && pp > lim.pp_max) continue;
      const int dp = world / tp / pp;
      for (int ep : divisors(dp)) {
        if (lim.ep_max && ep > lim.ep_max) continue;
        PlanLayout l;
        l.dp = dp, l.tp = tp, l.pp = pp, l.ep = ep;
        add_variants(cands, l, lim, run.device);
      }
    }
  }
  std::vector<LayoutCost> out;
  for (const PlanLayout& l : cands) {
    if (!plan_layout_error(l, run, world).empty()) continue;
    LayoutCost c;
    c.layout = l;
    c.mem = predict_memory(l, run);
    c.comm = predict_traffic(l, run);
    c.time = predict_time(l, run, c.comm, rates);
    c.fits = mem_bytes <= 0 || c.mem.peak <= mem_bytes;
    c.order = (int)out.size();
    out.push_back(c);
  }
  std::stable_sort(out.begin(), out.end(), [](const LayoutCost& a, const LayoutCost& b) {
    if (a.fits != b.fits) return a.fits;
    if (a.time.tokens_per_s != b.time.tokens_per_s)
      return a.time.tokens_per_s > b.time.tokens_per_s;
    return a.mem.peak < b.mem.peak;
  });
  return out;
}

}  // namespace zt
