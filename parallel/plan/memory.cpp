// memory.cpp: the bytes per rank by category (layout_plan.h). Model state is plan_zero's, exact;
// activations are the buffers the layers grow (model/acts.h) for the microbatches a stage holds
// at once; buffers are the engine's transient copies at their most. Activations are predicted at
// balanced routing: a rank whose experts are routed more rows holds more.
#include <algorithm>
#include <map>

#include "model/ops/ops.h"
#include "parallel/comm/mpi_tuning.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/plan/rank_model.h"

namespace zt {
namespace {

// Under expert parallelism a rank's experts compute the rows routed to them from every rank of
// its group: N x top_k at balanced routing, more on the rank of the busiest experts, which sets
// the largest rank's memory (the routing a run will have is not known before it runs; early in
// training it is far from balanced: tests/bench/expert_parallel.sh measured a worst block's
// max/mean of 2.9). Sized here for 1.25x the balanced rows.
constexpr double kRoutingSkew = 1.25;

struct MicroShape {
  int64_t N, rows, B, T, d, dq, heads, V, E, K, hid_dense, hid_shared, hid_expert;
  int64_t routed;    // the microbatch's expert assignments, N x top_k
  int64_t received;  // the rows this rank's experts compute (expert parallel: see kRoutingSkew)
  bool sp, tp, ep;
};

MicroShape shape_of(const PlanLayout& l, const PlanRun& run) {
  const ModelConfig& m = run.model;
  MicroShape s;
  s.B = run.micro_batch, s.T = m.seq_len, s.N = s.B * s.T;
  s.sp = l.sequence_parallel, s.tp = l.tp > 1, s.ep = l.ep > 1;
  s.rows = s.sp ? s.N / l.tp : s.N;
  s.d = m.model_dim, s.dq = m.model_dim / l.tp, s.heads = m.heads / l.tp;
  s.V = m.vocab / l.tp, s.E = m.experts, s.K = m.top_k;
  s.hid_dense = m.ffn_dim / l.tp;
  s.hid_shared = (int64_t)m.shared_experts * m.expert_ffn_dim / l.tp;
  s.hid_expert = m.expert_ffn_dim / l.tp;
  s.routed = s.N * s.K;
  s.received = s.ep ? (int64_t)(kRoutingSkew * (double)s.routed) : s.routed;
  return s;
}

// One microbatch's activations (Acts) over the blocks [first, end) and the embedding / head, in
// floats: what forward keeps for backward.
int64_t acts_floats(const MicroShape& s, const ModelConfig& m, const PipeChunk& c) {
  const int64_t Nd = s.N * s.d, Nq = s.N * s.dq, Rd = s.rows * s.d;
  int64_t f = (c.end_block - c.first_block + 1) * Rd;  // the residual stream in and out
  bool moe_any = false;
  for (int b = c.first_block; b < c.end_block; ++b) {
    f += 2 * Nd + 4 * Nq + Rd + 2 * s.rows;  // xa, xf; q, k, v, att; h; the norms' rstd
    f += s.B * s.heads * s.T * s.T;          // attention probabilities
    if (!m.is_moe(b)) {
      f += 3 * s.N * s.hid_dense;
      continue;
    }
    moe_any = true;
    f += 2 * s.N * s.E + s.N * s.K;          // router logits, probabilities, gates
    f += s.routed * s.d + s.received * s.d;  // dispatched (expert parallel: received) rows,
                                             // the outputs of the rank's assignments
    f += 3 * s.received * s.hid_expert;      // the experts' SwiGLU
    f += 3 * s.N * s.hid_shared;             // the shared expert's
  }
  if (s.sp) f += Nd;  // a partial output over all rows
  if (s.ep && moe_any) f += (s.received + std::max(s.routed, s.received)) * s.d;  // in transit
  if (c.head) f += Nd + s.rows + s.N * s.V + 2 * s.N;
  f += Rd;  // the residual gradient
  return f;
}

// The backward temporaries (GradScratch), one set per rank: each at its largest use.
int64_t scratch_floats(const MicroShape& s, const ModelConfig& m,
                       const std::vector<PipeChunk>& cs) {
  const int64_t Nd = s.N * s.d, Nq = s.N * s.dq;
  bool moe = false, dense = false, head = false;
  for (const PipeChunk& c : cs) {
    head |= c.head;
    for (int b = c.first_block; b < c.end_block; ++b) (m.is_moe(b) ? moe : dense) = true;
  }
  int64_t f = 2 * Nd + 6 * Nq;  // dxf, dxa; datt, dq, dk, dv and the rotated dq, dk
  int64_t hid = 0;
  if (dense) hid = std::max(hid, s.N * s.hid_dense);
  if (moe) hid = std::max({hid, s.N * s.hid_shared, s.received * s.hid_expert});
  f += 3 * hid;
  if (moe) f += 2 * s.routed * s.d + s.N * s.K + 2 * s.N * s.E;
  if (moe && s.ep) f += 3 * s.received * s.d;
  if (head) f += s.N * s.V;
  if (s.sp) f += Nd + s.rows * s.d + s.d;
  return f;
}

// The most microbatches a stage holds activations for at once (forward run, backward or weight
// pass not yet): 1 without a pipeline.
int in_flight(const PlanLayout& l, const PlanRun& run, int stage) {
  if (l.pp == 1) return 1;
  const auto sched =
      pipe_schedule(pipe_schedule_from_name(l.schedule), l.pp, run.grad_accum, l.virtual_stages);
  const bool zb = l.schedule == "zb";
  std::map<int, int> open;  // microbatch -> chunk passes still to finish
  int most = 0;
  for (const PipeAction& a : sched[stage]) {
    if (a.op == PipeOp::F) open[a.micro] += 1;
    if ((a.op == PipeOp::B && !zb) || a.op == PipeOp::W)
      if (--open[a.micro] == 0) open.erase(a.micro);
    most = std::max(most, (int)open.size());
  }
  return std::max(most, 1);
}

// The MPI backend's receive slots (parallel/comm/mpi_plan_op.cpp): a reducing operation holds
// min(its reducing receives, ZT_COMM_SLOTS) buffers of its largest reducing message (at most
// ZT_COMM_CHUNK_KB) from a pool that keeps them once grown. Its reducing receives: the n - 1
// ring steps' blocks in messages of that size.
// A reduce-scatter over n > 2 ranks also keeps its partial sums in a scratch buffer of n - 2
// blocks (ring_plans.cpp).
int64_t reduce_slots(int64_t count, int n, int64_t es, bool scatter) {
  if (n <= 1 || count == 0) return 0;
  const MpiTuning& t = mpi_tuning();
  const int64_t block = (count + n - 1) / n * es, chunk = (int64_t)t.chunk_bytes;
  const int64_t recvs = (n - 1) * ((block + chunk - 1) / chunk);
  const int64_t scratch = scatter && n > 2 ? (n - 2) * block : 0;
  return std::min<int64_t>(recvs, t.slots) * std::min(chunk, block) + scratch;
}

// The engine's transient buffers at their most in a step (parallel/zero/engine.cpp), plus the
// backend's slots on --device cpu: every reduction of a (micro)step is in flight at once at its
// end. At stages 2-3 every unit's full gradient (fp32, or its 16-bit copy) and the received shard
// live from its backward until the reductions complete (the microbatch's; a pipeline stage's:
// the step's). Stage 3 gathers a unit's parameters for its use (the embedding and head held from
// forward into backward, the computing unit and the prefetched ones; a pipeline stage holds all
// of its units through the step); 16-bit runs convert the units in use to fp32. A pipeline stage
// copies what it sends.
int64_t buffer_bytes(const RankModel& r, const PlanLayout& l, const PlanRun& run,
                     const MicroShape& s, int64_t& slots) {
  const bool lowp = run.precision != DType::fp32, z3 = l.zero_stage == 3;
  const bool tied = !run.model.untie_embeddings;
  const int64_t es = (int64_t)dtype_size(run.precision);
  int64_t grads = 0, largest = 0, all = 0, kept = 0, pool = 0, widest = 0;
  for (size_t u = 0; u < r.plan.units.size(); ++u) {
    const ZeroUnitPlan& p = r.plan.units[u];
    const UnitLayout& lay = p.lay;
    if (l.zero_stage >= 2) grads += lay.padded() * (lowp ? es : 4) + lay.shard() * es;
    widest = std::max(widest, lay.padded());
    const int64_t full = lay.padded() * ((z3 ? es : 0) + (lowp ? 4 : 0));
    const UnitKind k = r.table.units[u].kind;
    all += full;
    if (k == UnitKind::head || (k == UnitKind::embed && tied))
      kept += full;
    else
      largest = std::max(largest, full);
    if (run.device == "cpu") {
      const int n = r.grid.group_size(p.group);
      for (int c = 0; c < lay.chunks(); ++c)
        pool += reduce_slots(lay.chunk_len(c), n, es, l.zero_stage > 0);
    }
  }
  if (run.device == "cpu" && l.tp > 1)  // a tensor-parallel sum at the same time
    pool += reduce_slots(s.N * s.d, l.tp, 4, l.sequence_parallel);
  // 16-bit: the unit computing backward has its fp32 gradient too (converted when it is ready).
  const int64_t transient = lowp ? widest * 4 : 0;
  int64_t held;
  if (l.pp > 1)
    held = all + grads + transient;
  else
    held = std::max(kept + (1 + (z3 ? run.prefetch : 0)) * largest,
                    kept + grads + transient + (lowp ? largest : 0));
  if (!z3 && !lowp) held = grads;
  slots = pool;
  int64_t b = pool + held;
  if (l.pp > 1) b += 2 * s.rows * s.d * 4;
  return b;
}

}  // namespace

PlanMemory predict_memory(const PlanLayout& l, const PlanRun& run) {
  PlanMemory out;
  const MicroShape s = shape_of(l, run);
  for (int rank : distinct_ranks(l)) {
    const RankModel r = rank_model(l, run, rank);
    const std::vector<PipeChunk>& chunks = r.pieces;
    int64_t per_micro = 0;
    for (const PipeChunk& c : chunks) per_micro += acts_floats(s, run.model, c);
    const int64_t acts =
        4 * (in_flight(l, run, r.at.pp) * per_micro + scratch_floats(s, run.model, chunks));
    int64_t slots = 0;
    const int64_t buffers = buffer_bytes(r, l, run, s, slots);
    ZeroBytes z = r.plan.bytes;
    // What leaves the rank's memory: NVMe-offloaded state (plan_zero keeps only the staging
    // tiles), and on --device cuda the state offloaded to CPU memory.
    int64_t nvme = 0, host = 0;
    if (l.offload_optimizer == "nvme" || l.offload_params == "nvme") {
      const ZeroBytes all = resident_rank_model(l, run, rank).plan.bytes;
      if (l.offload_optimizer == "nvme") nvme += all.optim;
      if (l.offload_params == "nvme") nvme += all.params;
    }
    if (run.device == "cuda" && l.offload_optimizer == "cpu") host += z.optim, z.optim = 0;
    if (run.device == "cuda" && l.offload_params == "cpu") host += z.params, z.params = 0;
    // Start-up: the model's own fp32 parameters and gradients while the engine allocates its
    // state (model.cpp, engine.cpp); a step: the state, the activations and the buffers.
    int64_t own = 0;
    for (int u = 0; u < r.table.num_units(); ++u)
      if (r.owned.empty() || r.owned[u]) own += 8 * r.table.unit_numel(u);
    const int64_t peak = std::max(own + z.total(), z.total() + acts + buffers);
    out.params = std::max(out.params, z.params);
    out.grads = std::max(out.grads, z.grads);
    out.optim = std::max(out.optim, z.optim);
    out.activations = std::max(out.activations, acts);
    out.buffers = std::max(out.buffers, buffers);
    out.comm_slots = std::max(out.comm_slots, slots);
    out.peak = std::max(out.peak, peak);
    out.host = std::max(out.host, host);
    out.nvme = std::max(out.nvme, nvme);
  }
  return out;
}

}  // namespace zt
