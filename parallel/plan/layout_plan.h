// layout_plan.h: what a layout costs before it runs (SPEC section 8, `zerotrain plan`): the bytes
// per rank by memory category and the bytes rank 0 sends per step by collective, from the same
// pure functions the runtime allocates and communicates by (plan_zero, the parameter table, the
// pipeline's stages and schedules, ring_bytes.h), and a step time from compute and traffic rates.
//
// Traffic is the model's: the control exchanges (comm.h, ControlTraffic) are not predicted. The
// expert all-to-all is predicted at balanced routing (what a rank sends off and what it gets back
// add up to about that whatever the routing); everything else is exact. The tests hold the
// runtime's counters to these figures (tests/e2e/plan.sh, tests/mpi/test_plan.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "runtime/dtype.h"

namespace zt {

// One candidate: the layout flags of `train`.
struct PlanLayout {
  int dp = 1, tp = 1, pp = 1, ep = 1;
  int zero_stage = 0;
  // --offload-optimizer, --offload-params (stage 3): none | cpu | nvme. On --device cpu the
  // state offloaded to cpu memory is still in the memory the rank computes in.
  std::string offload_optimizer = "none", offload_params = "none";
  std::string offload() const;  // "none", "optimizer:cpu", "optimizer+params:nvme", ...
  bool sequence_parallel = false;
  std::string schedule = "1f1b";  // pp > 1: 1f1b | interleaved | zb
  int virtual_stages = 1;
  std::string flags() const;  // the `train` flags that select it, e.g. "--tp 2 --zero-stage 1"
  std::string name() const;   // short: "dp2 tp2 z1"
};

// What the run trains, besides its layout.
struct PlanRun {
  ModelConfig model;
  int micro_batch = 8, grad_accum = 1;
  DType precision = DType::fp32;
  double bucket_mb = 25;
  int prefetch = 1;
  std::string device = "cpu";  // cpu | cuda
  double flops_per_token = 0;  // training FLOPs per token (0: from the model's table)
};

// Bytes per rank by category, the largest rank's (as the run's `mem` metrics report them):
// params / grads / optim resident between steps, activations and buffers at their peak in a
// step, peak the most the rank holds at once (also at start-up).
// Offloaded state is not in these: `host` is what --device cuda keeps in CPU memory
// (--offload-* cpu), `nvme` what the shard files hold (--offload-* nvme).
// `comm_slots` is the part of buffers and peak that depends on timing: the MPI backend's receive
// slots counted as if every reduction of a (micro)step were in flight at once, an upper bound; a
// run whose reductions finish before the next starts holds less (down to one operation's).
struct PlanMemory {
  int64_t params = 0, grads = 0, optim = 0, activations = 0, buffers = 0, peak = 0;
  int64_t host = 0, nvme = 0;
  int64_t comm_slots = 0;
};

// Bytes rank 0 sends per step, by collective (the run's `comm` metrics).
struct PlanTraffic {
  int64_t allgather = 0, reduce_scatter = 0, allreduce = 0, p2p = 0, alltoall = 0;
  // The same bytes by what sends them: ZeRO over dp / edp (with the tied embedding's sum),
  // tensor parallelism, the pipeline, expert parallelism.
  int64_t zero = 0, tensor = 0, pipeline = 0, expert = 0;
  int64_t total() const { return allgather + reduce_scatter + allreduce + p2p + alltoall; }
};

// The rates a step time is estimated at: GEMM FLOP/s of one rank and the bus bandwidth of each
// kind of group (bytes a rank sends per second).
struct PlanRates {
  double flops = 20e9;      // achieved training FLOP/s of one rank (a core each)
  double intra_bw = 6e9;    // bytes/s a rank sends to ranks of its node
  double inter_bw = 6e9;    // ... to ranks of other nodes
  int ranks_per_node = 0;   // groups inside a node use intra_bw (0 = all ranks on one node)
  double nvme_bw = 1e9;     // bytes/s of the offload files, read and write
  double host_bw = 25e9;    // --device cuda: bytes/s between the GPU and CPU memory
  double host_adamw = 2e9;  // --device cuda, optimizer offloaded to cpu: parameters/s updated
  // The share of ZeRO's traffic hidden behind compute: none on the CPU, where the communication
  // thread shares the rank's core (docs/performance.md); most of it on GPUs (NCCL's stream).
  double overlap = 0;
  std::string source = "defaults";
};
PlanRates default_rates(const std::string& device);  // cpu | cuda

// A layout trains micro-batch x grad-accum x dp samples per step (train's flags are per rank), so
// layouts are compared by tokens per second, not by step time.
struct PlanTime {
  double compute_ms = 0, comm_ms = 0, bubble = 0, step_ms = 0;
  double tokens_per_s = 0;
};

struct LayoutCost {
  PlanLayout layout;
  PlanMemory mem;
  PlanTraffic comm;
  PlanTime time;
  bool fits = true;  // peak within the memory budget
  int order = 0;     // place in the enumeration: by tp, pp, ep; a layout's default schedule and
                     // sequence parallelism off before their variants; then stage, offload
};

// Why `train` would refuse the layout for this run on `world` ranks ("" when it runs), as the
// first error line `train` gives.
std::string plan_layout_error(const PlanLayout& l, const PlanRun& run, int world);

// The memory and the traffic of a valid layout.
PlanMemory predict_memory(const PlanLayout& l, const PlanRun& run);
PlanTraffic predict_traffic(const PlanLayout& l, const PlanRun& run);
PlanTime predict_time(const PlanLayout& l, const PlanRun& run, const PlanTraffic& t,
                      const PlanRates& rates);

// Limits on the layouts enumerated (0 = none).
struct PlanLimits {
  int tp_max = 0, pp_max = 0, ep_max = 0;
  bool offload = true;            // include the offload variants
  bool sequence_parallel = true;  // include tp with --sequence-parallel on
};

// Every valid layout of `world` ranks for the run, costed, ranked: those that fit `mem_bytes`
// per rank first (0 = no budget), then by predicted tokens per second, then by peak memory.
// (Variants of pipeline schedule and sequence parallelism are layouts of their own.)
std::vector<LayoutCost> plan_layouts(const PlanRun& run, int world, int64_t mem_bytes,
                                     const PlanLimits& limits, const PlanRates& rates);

}  // namespace zt
