// moe_layer.cpp: the MoE FFN of a block (ffn.h): router, top-k plan with capacity, dispatch,
// routed experts, gated combine, shared expert; and, under expert parallelism (Model::ep), the
// exchange of the routed rows with the ranks that hold their experts (model/ep_hook.h).
//
// The routing is the source rank's, exactly as on one process: its plan orders its rows by
// expert, so the rows for ep rank j's experts are one contiguous range. Per-expert counts go first
// (each rank learns how many rows of each of its experts every rank sends), then the rows, with
// all-to-all-v. A rank receives them grouped by source and regroups them by expert, so each of
// its experts runs one GEMM over every row routed to it in the ep group; outputs go back the same
// way. Backward moves the gradients of the outputs to the experts and the input gradients back.
// The shared expert runs while the rows are in flight.
#include <algorithm>

#include "model/ep_hook.h"
#include "model/ffn.h"
#include "model/layers.h"

namespace zt {
namespace {

// The routed experts held here run on x [rows, d] grouped by expert (offset [X + 1]), writing
// their outputs to y (every row is one expert's); keeps ea / eb / es for backward.
void run_experts(Model& m, int l, BlockActs& ba, const float* x, const int32_t* offset, float* y) {
  const int d = m.cfg.model_dim, eh = m.dims.expert_ffn;
  const int rows = offset[m.dims.experts];
  const int64_t rh = (int64_t)rows * eh;
  float *ea = room(ba.ea, rh), *eb = room(ba.eb, rh), *es = room(ba.es, rh);
  for (int e = 0; e < m.dims.experts; ++e) {
    const int r0 = offset[e], nr = offset[e + 1] - r0;
    if (nr == 0) continue;
    ffn_forward(m, m.blocks[l].experts[e], y + (int64_t)r0 * d, x + (int64_t)r0 * d, nr, d, eh,
                ea + (int64_t)r0 * eh, eb + (int64_t)r0 * eh, es + (int64_t)r0 * eh,
                /*accumulate=*/false);
  }
}

// dx [rows, d] += the experts' input gradient given dy, both grouped by expert as in run_experts.
void experts_backward(Model& m, int l, BlockActs& ba, GradScratch& s, const float* x,
                      const int32_t* offset, const float* dy, float* dx, bool defer) {
  const int d = m.cfg.model_dim, eh = m.dims.expert_ffn;
  for (int e = 0; e < m.dims.experts; ++e) {
    const int r0 = offset[e], nr = offset[e + 1] - r0;
    if (nr == 0) continue;
    const int64_t rd = (int64_t)r0 * d, rh = (int64_t)r0 * eh;
    ffn_backward(
        dx + rd, dy + rd, x + rd, nr, d, eh,
        saved(m, m.blocks[l].experts[e], ba.ea.data() + rh, ba.eb.data() + rh, ba.es.data() + rh),
        s, ba.wgrad, defer);
  }
}

// Who sends what to whom for this plan (collective over the ep group: the counts).
void route(Model& m, const MoePlan& plan, ExpertRoute& r) {
  const int P = m.ep->ranks(), X = m.dims.experts;
  std::vector<int32_t> mine(plan.offset.size() - 1);
  for (size_t e = 0; e < mine.size(); ++e) mine[e] = plan.offset[e + 1] - plan.offset[e];
  r.send_rows.assign(P, 0);
  for (int j = 0; j < P; ++j) r.send_rows[j] = plan.offset[(j + 1) * X] - plan.offset[j * X];
  r.counts.assign((size_t)P * X, 0);
  m.ep->exchange_counts(mine.data(), r.counts.data(), X);
  r.recv_rows.assign(P, 0);
  r.offset.assign(X + 1, 0);
  for (int i = 0; i < P; ++i)
    for (int e = 0; e < X; ++e) {
      r.recv_rows[i] += r.counts[(size_t)i * X + e];
      r.offset[e + 1] += r.counts[(size_t)i * X + e];
    }
  for (int e = 0; e < X; ++e) r.offset[e + 1] += r.offset[e];
}

// Rows as received (by source rank, then expert) <-> grouped by expert (then source rank).
void regroup(float* dst, const float* src, const ExpertRoute& r, int d, bool to_experts) {
  const int P = (int)r.recv_rows.size(), X = (int)r.offset.size() - 1;
  std::vector<int64_t> at(r.offset.begin(), r.offset.end() - 1);  // next row of each expert
  int64_t pos = 0;                                                // in the received order
  for (int i = 0; i < P; ++i)
    for (int e = 0; e < X; ++e) {
      const int64_t n = (int64_t)r.counts[(size_t)i * X + e] * d;
      float* out = to_experts ? dst + at[e] * d : dst + pos * d;
      const float* in = to_experts ? src + pos * d : src + at[e] * d;
      std::copy(in, in + n, out);
      at[e] += r.counts[(size_t)i * X + e];
      pos += r.counts[(size_t)i * X + e];
    }
}

// The shared expert's input: xf itself, or with QAT a quantized copy (xf stays the router's).
const float* shared_input(Model& m, BlockActs& ba, const float* xf, int N, int d) {
  if (!m.qat.active) return xf;
  float* xs = room(ba.xs, (int64_t)N * d);
  copy(xs, xf, (int64_t)N * d);
  qat_input(m, xs, N, d);
  return xs;
}

void add_load(LossParts& out, const ModelConfig& c, int l, const int32_t* idx, int64_t n) {
  if (out.load.empty()) out.load.assign(load_size(c), 0);
  int64_t* block = out.load.data() + (int64_t)l * c.experts;
  for (int64_t i = 0; i < n; ++i) ++block[idx[i]];
}

}  // namespace

const char* ep_point_name(EpPoint p) {
  static const char* names[] = {"dispatch", "combine", "grad_out", "grad_in"};
  return names[(int)p];
}

void moe_forward(Model& m, int l, Acts& a, const float* xf, float* y, LossParts& out) {
  const ModelConfig& c = m.cfg;
  const int N = a.N, d = c.model_dim, E = c.experts, K = c.top_k, sh = m.dims.shared;
  BlockActs& ba = a.blocks[l];
  const BlockParams& bp = m.blocks[l];
  float* rlogits = room(ba.rlogits, (int64_t)N * E);
  float* rprobs = room(ba.rprobs, (int64_t)N * E);
  float* gates = room(ba.gates, (int64_t)N * K);
  ba.idx.resize((size_t)N * K);
  linear_forward(rlogits, xf, m.param(bp.router), N, d, E);
  router_forward(rprobs, ba.idx.data(), gates, rlogits, N, E, K, c.router_norm);
  ba.aux = moe_aux_loss_forward(rprobs, ba.idx.data(), N, E, K, (float)c.aux_loss_coef);
  out.aux += ba.aux;
  add_load(out, c, l, ba.idx.data(), (int64_t)N * K);
  moe_plan(ba.plan, ba.idx.data(), N, E, K,
           a.dropless ? 0 : moe_capacity(c.capacity_factor, N, K, E));
  out.dropped += ba.plan.dropped;
  const int rows = ba.plan.rows();
  // The dispatched rows: kept for the experts' backward on one rank; under ep only sent (the
  // receiver keeps its own), so they go in a buffer of the microbatch's transit.
  float* xe = m.ep ? room(a.ep_out, (int64_t)rows * d) : room(ba.xe, (int64_t)rows * d);
  float* ye = room(ba.ye, (int64_t)rows * d);
  moe_dispatch_forward(xe, xf, ba.plan, d);
  qat_input(m, xe, rows, d);  // the experts' inputs (the router read xf unquantized)
  auto shared = [&] {
    if (!bp.shared.present()) return;
    const int64_t ns = (int64_t)N * sh;
    ffn_forward(m, bp.shared, y, shared_input(m, ba, xf, N, d), N, d, sh, room(ba.sa, ns),
                room(ba.sb, ns), room(ba.ss, ns));
  };
  if (!m.ep) {
    run_experts(m, l, ba, xe, ba.plan.offset.data(), ye);
    moe_combine_forward(y, ye, gates, ba.plan, d);
    shared();
    return;
  }
  ExpertRoute& r = ba.route;
  route(m, ba.plan, r);
  const int64_t Rd = (int64_t)r.rows() * d;
  float* in = room(a.ep_in, Rd);
  TpWait sent =
      m.ep->exchange_rows(EpPoint::dispatch, l, xe, r.send_rows.data(), in, r.recv_rows.data(), d);
  shared();  // while the rows travel
  sent.wait();
  float* xl = room(ba.xl, Rd);
  regroup(xl, in, r, d, /*to_experts=*/true);
  float* yl = room(a.ep_out, Rd);  // xe has been sent
  run_experts(m, l, ba, xl, r.offset.data(), yl);
  regroup(in, yl, r, d, /*to_experts=*/false);
  m.ep->exchange_rows(EpPoint::combine, l, in, r.recv_rows.data(), ye, r.send_rows.data(), d)
      .wait();
  moe_combine_forward(y, ye, gates, ba.plan, d);
}

void moe_backward(Model& m, int l, Acts& a, GradScratch& s, float loss_scale, bool defer,
                  const float* dy, float* dxf, float* dx_out) {
  const ModelConfig& c = m.cfg;
  const int N = a.N, d = c.model_dim, E = c.experts, K = c.top_k;
  BlockActs& ba = a.blocks[l];
  const BlockParams& bp = m.blocks[l];
  const float* xf = ba.xf.data();
  auto shared = [&] {
    if (bp.shared.present())
      ffn_backward(dxf, dy, m.qat.active ? ba.xs.data() : xf, N, d, m.dims.shared,
                   saved(m, bp.shared, ba.sa.data(), ba.sb.data(), ba.ss.data()), s, ba.wgrad,
                   defer);
  };
  const int rows = ba.plan.rows();
  float* dye = room(s.dye, (int64_t)rows * d);
  float* dxe = room(s.dxe, (int64_t)rows * d);
  float* dgates = room(s.dgates, (int64_t)N * K);
  zero(dye, (int64_t)rows * d);
  zero(dgates, (int64_t)N * K);
  moe_combine_backward(dye, dgates, dy, ba.ye.data(), ba.gates.data(), ba.plan, d);
  // The expert outputs are partial sums under tp, so their gates' gradient is too.
  TpWait gsum = m.tp ? m.tp->sum_partial(TpPoint::moe_dgates, l, dgates, (int64_t)N * K) : TpWait{};
  if (!m.ep) {
    shared();
    zero(dxe, (int64_t)rows * d);
    experts_backward(m, l, ba, s, ba.xe.data(), ba.plan.offset.data(), dye, dxe, defer);
  } else {
    const ExpertRoute& r = ba.route;
    const int64_t Rd = (int64_t)r.rows() * d;
    float* in = room(s.ep_a, Rd);
    TpWait sent = m.ep->exchange_rows(EpPoint::grad_out, l, dye, r.send_rows.data(), in,
                                      r.recv_rows.data(), d);
    shared();  // while the gradients travel
    sent.wait();
    float* dyl = room(s.ep_b, Rd);
    regroup(dyl, in, r, d, /*to_experts=*/true);
    float* dxl = room(s.ep_c, Rd);
    zero(dxl, Rd);
    experts_backward(m, l, ba, s, ba.xl.data(), r.offset.data(), dyl, dxl, defer);
    regroup(in, dxl, r, d, /*to_experts=*/false);
    m.ep->exchange_rows(EpPoint::grad_in, l, in, r.recv_rows.data(), dxe, r.send_rows.data(), d)
        .wait();
  }
  moe_dispatch_backward(dxf, dxe, ba.plan, d);
  // The router is replicated: its part of dxf is added, for the rank's rows, once the partial sum
  // is complete.
  TpWait sum = complete_rows(m, a, TpPoint::ffn_dinput, l, dxf, dx_out, d);
  gsum.wait();
  float* dprobs = room(s.dprobs, (int64_t)N * E);
  float* drlogits = room(s.drlogits, (int64_t)N * E);
  zero(dprobs, (int64_t)N * E);
  moe_aux_loss_backward(dprobs, ba.idx.data(), N, E, K, (float)c.aux_loss_coef, loss_scale);
  zero(drlogits, (int64_t)N * E);
  router_backward(drlogits, dgates, dprobs, ba.rprobs.data(), ba.idx.data(), N, E, K,
                  c.router_norm);
  weight_grad(ba.wgrad, defer, m.grad(bp.router), xf, drlogits, N, d, E);
  sum.wait();
  linear_backward_input(dx_out, drlogits + (int64_t)a.row0 * E, m.param(bp.router), a.rows, d, E);
}

}  // namespace zt
