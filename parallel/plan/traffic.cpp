// traffic.cpp: the bytes rank 0 sends per step, by collective (layout_plan.h). Each term names
// the code that sends it; the sizes are the ring volumes of parallel/comm/ring_bytes.h.
#include "model/ops/ops.h"
#include "parallel/comm/ring_bytes.h"
#include "parallel/plan/rank_model.h"

namespace zt {
namespace {

int64_t ag_even(int64_t count, int n, int r, size_t es) {
  return all_gather_bytes(even_split_counts((size_t)count, n), r, es);
}
int64_t rs_even(int64_t count, int n, int r, size_t es) {
  return reduce_scatter_bytes(even_split_counts((size_t)count, n), r, es);
}

// ZeRO (parallel/zero/engine.cpp): per unit and bucket chunk, over the unit's group (dp; edp for
// the routed experts). Stage 0 all-reduces the gradients once per step; 1 reduce-scatters once
// and all-gathers the updated parameters; 2 reduce-scatters every microbatch; 3 also all-gathers
// the parameters for every use: forward and backward of each microbatch, once for the units kept
// from forward into backward (the head, a tied embedding). A pipeline stage runs its units' hooks
// once per step (pipeline_step.cpp), so there every unit is gathered and reduced once.
void zero_traffic(PlanTraffic& t, const RankModel& r, const PlanLayout& l, const PlanRun& run) {
  const size_t es = dtype_size(run.precision);
  const int M = run.grad_accum;
  const bool per_step = l.pp > 1;
  const bool tied = !run.model.untie_embeddings;
  for (size_t u = 0; u < r.plan.units.size(); ++u) {
    const ZeroUnitPlan& p = r.plan.units[u];
    const int n = r.grid.group_size(p.group), g = p.group_rank;
    const UnitKind kind = r.table.units[u].kind;
    const int uses = kind == UnitKind::head || (kind == UnitKind::embed && tied) ? 1 : 2;
    const int reduces = l.zero_stage >= 2 && !per_step ? M : 1;
    const int gathers = l.zero_stage == 3 ? (per_step ? 1 : M * uses) : l.zero_stage >= 1 ? 1 : 0;
    for (int c = 0; c < p.lay.chunks(); ++c) {
      const int64_t len = p.lay.chunk_len(c);
      if (l.zero_stage == 0)
        t.allreduce += all_reduce_bytes((size_t)len, n, g, es);
      else
        t.reduce_scatter += reduces * rs_even(len, n, g, es);
      t.allgather += gathers * ag_even(len, n, g, es);
    }
  }
  // A tied embedding on the first and the last pipeline stage: the two gradients are summed once
  // per step (ZeroEngine::sum_tied_embedding), in the form the stage keeps them.
  const int e = r.table.unit_of(UnitKind::embed);
  const bool holds = e >= 0 && (r.owned.empty() || r.owned[e]);
  if (l.pp > 1 && tied && holds && (r.at.pp == 0 || r.at.pp == l.pp - 1)) {
    const UnitLayout& lay = r.plan.units[e].lay;
    const bool lowp = run.precision != DType::fp32;
    const int64_t n = l.zero_stage >= 1 ? lay.shard() : lay.padded();
    const size_t size = l.zero_stage >= 2 || !lowp ? 4 : es;
    t.allreduce += all_reduce_bytes((size_t)n, 2, r.at.pp == 0 ? 0 : 1, size);
  }
}

// Tensor parallelism (model/layer_util.h, embed_head.cpp, block.cpp, moe_layer.cpp), fp32 over
// tp, per microbatch. Without sequence parallelism every partial sum is an all-reduce of the N x d
// activation: the embedding's lookup, attention's and the FFN's outputs forward, their input
// gradients backward, the head's input gradient; plus the MoE gates' gradient [N, top_k]. With it
// each such sum is a reduce-scatter to the rank's rows and each column-parallel input an
// all-gather of them (the norm outputs forward, the output gradients backward), and the norm
// gains' gradients are all-reduced. The head gathers the cross-entropy's row stats.
void tensor_traffic(PlanTraffic& t, const RankModel& r, const PlanLayout& l, const PlanRun& run,
                    const std::vector<PipeChunk>& chunks) {
  if (l.tp == 1) return;
  const ModelConfig& m = run.model;
  const int n = l.tp, g = r.at.tp, d = m.model_dim;
  const int64_t N = (int64_t)run.micro_batch * m.seq_len, rows = N / n;
  int64_t sums = 0, norms = 0, moe = 0, heads = 0;
  for (const PipeChunk& c : chunks) {
    const int blocks = c.end_block - c.first_block;
    sums += 4 * blocks + c.embed + c.head;
    norms += 2 * blocks + c.head;
    heads += c.head;
    for (int b = c.first_block; b < c.end_block; ++b) moe += m.is_moe(b);
  }
  int64_t ag = 0, rs = 0, ar = 0;
  if (!l.sequence_parallel) {
    ar += sums * all_reduce_bytes((size_t)(N * d), n, g, 4);
  } else {
    rs += sums * ring_blocks_bytes((size_t)(rows * d), n, 4);
    ag += sums * ring_blocks_bytes((size_t)(rows * d), n, 4);
    ar += norms * all_reduce_bytes((size_t)d, n, g, 4);
  }
  ar += moe * all_reduce_bytes((size_t)(N * m.top_k), n, g, 4);
  ag += heads * ring_blocks_bytes((size_t)(N * kCeStats), n, 4);
  t.allgather += run.grad_accum * ag;
  t.reduce_scatter += run.grad_accum * rs;
  t.allreduce += run.grad_accum * ar;
}

// Pipeline (pipeline_step.cpp): per microbatch each virtual stage sends its output activation to
// the next and its input gradient to the previous, the rank's rows x d in fp32.
void pipeline_traffic(PlanTraffic& t, const RankModel& r, const PlanLayout& l, const PlanRun& run) {
  if (l.pp == 1) return;
  const int64_t N = (int64_t)run.micro_batch * run.model.seq_len;
  const int64_t rows = l.sequence_parallel ? N / l.tp : N;
  const int last = l.pp * l.virtual_stages - 1;
  for (int v : r.chunks)
    t.p2p += run.grad_accum * ((v < last) + (v > 0)) * rows * run.model.model_dim * 4;
}

// Expert parallelism (moe_layer.cpp over parallel/expert/): per microbatch and MoE block, one
// exchange of the per-expert counts (int32 per local expert to each other rank) and four of rows
// of d fp32: the dispatched inputs and the combined outputs forward, their gradients backward.
// At balanced routing (ep - 1) / ep of the N x top_k assignments go to other ranks; what a rank
// sends off and what it gets back add up to about that at any routing.
void expert_traffic(PlanTraffic& t, const PlanLayout& l, const PlanRun& run,
                    const std::vector<PipeChunk>& chunks) {
  if (l.ep == 1) return;
  const ModelConfig& m = run.model;
  const int64_t N = (int64_t)run.micro_batch * m.seq_len;
  const double remote = (double)N * m.top_k * (l.ep - 1) / l.ep;
  const int64_t counts = (int64_t)(l.ep - 1) * (m.experts / l.ep) * 4;
  const int64_t per_block = 4 * (int64_t)(remote * m.model_dim * 4) + counts;
  for (const PipeChunk& c : chunks)
    for (int b = c.first_block; b < c.end_block; ++b)
      if (m.is_moe(b)) t.alltoall += run.grad_accum * per_block;
}

}  // namespace

PlanTraffic predict_traffic(const PlanLayout& l, const PlanRun& run) {
  const RankModel r = rank_model(l, run, 0);
  const std::vector<PipeChunk>& chunks = r.pieces;
  PlanTraffic t;
  zero_traffic(t, r, l, run);
  t.zero = t.total();
  tensor_traffic(t, r, l, run, chunks);
  t.tensor = t.total() - t.zero;
  pipeline_traffic(t, r, l, run);
  t.pipeline = t.p2p;
  expert_traffic(t, l, run, chunks);
  t.expert = t.alltoall;
  return t;
}

}  // namespace zt
