// step_time.cpp: a step's time from its compute and its traffic (layout_plan.h). An estimate to
// rank layouts by, not a measurement: compute at the rank's achieved FLOP/s, stretched by the
// pipeline schedule's bubble; tensor- and expert-parallel traffic in the critical path; ZeRO's
// partly hidden behind compute; the pipeline's sends; offload files read and written once.
#include <algorithm>

#include "model/params.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/plan/rank_model.h"

namespace zt {

PlanRates default_rates(const std::string& device) {
  PlanRates r;
  if (device == "cuda") {  // an H100 / H200 class GPU, NVLink inside a node, 400 Gb/s between
    r.flops = 350e12;
    r.intra_bw = 150e9;
    r.inter_bw = 40e9;
    r.ranks_per_node = 8;
    r.nvme_bw = 5e9;
    r.overlap = 0.8;
  }
  r.source = "defaults (" + device + ")";
  return r;
}

PlanTime predict_time(const PlanLayout& l, const PlanRun& run, const PlanTraffic& t,
                      const PlanRates& rates) {
  PlanTime out;
  const int world = l.dp * l.tp * l.pp;
  const double fpt = run.flops_per_token > 0
                         ? run.flops_per_token
                         : count_params(build_param_table(run.model), run.model).flops_per_token;
  const double tokens = (double)run.micro_batch * run.grad_accum * l.dp * run.model.seq_len;
  out.compute_ms = tokens * fpt / world / rates.flops * 1e3;
  if (l.pp > 1)
    out.bubble = pipe_schedule_bubble(pipe_schedule_from_name(l.schedule), l.pp, run.grad_accum,
                                      l.virtual_stages);
  // A group's ranks are consecutive in tp, then dp, then pp (parallel/grid.h).
  auto bw = [&](int span) {
    return rates.ranks_per_node == 0 || span <= rates.ranks_per_node ? rates.intra_bw
                                                                     : rates.inter_bw;
  };
  const double tensor_bw = bw(l.tp), expert_bw = bw(l.tp * l.ep);
  const double zero_bw = bw(l.tp * l.dp), pipe_bw = bw(world);
  double comm = t.tensor / tensor_bw + t.expert / expert_bw + t.pipeline / pipe_bw;
  comm += (1 - rates.overlap) * t.zero / zero_bw;
  // Offloaded to NVMe: the optimizer state read and written once per step, stage-3 parameters
  // read for their gathers. To CPU memory (--device cuda): the gradient shard down and the
  // updated parameter shard up, and the update at the CPU's rate.
  if (l.offload_optimizer != "none" || l.offload_params != "none") {
    const RankModel r = resident_rank_model(l, run, 0);
    const ZeroBytes& all = r.plan.bytes;
    double elems = 0;
    for (const ZeroUnitPlan& u : r.plan.units) elems += (double)u.state_len;
    if (l.offload_optimizer == "nvme") comm += 2.0 * all.optim / rates.nvme_bw;
    if (l.offload_params == "nvme") comm += (double)all.params / rates.nvme_bw;
    if (l.offload_optimizer == "cpu" && run.device == "cuda")
      comm += 2 * elems * dtype_size(run.precision) / rates.host_bw + elems / rates.host_adamw;
  }
  out.comm_ms = comm * 1e3;
  out.step_ms = out.compute_ms / (1 - out.bubble) + out.comm_ms;
  out.tokens_per_s = tokens / (out.step_ms / 1e3);
  return out;
}

}  // namespace zt
