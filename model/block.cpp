// block.cpp: one transformer block of layers.h, forward and backward.
//   h = x + Attn(RMSNorm_a(x));  y = h + FFN_l(RMSNorm_f(h))          (SPEC section 1)
// FFN_l is the dense SwiGLU, or the MoE: router, top-k dispatch, experts, gated combine, plus the
// shared expert. Under tensor parallelism (Model::tp) the row-parallel outputs and the
// column-parallel input gradients go through the hook (model/tp_hook.h) before they are used;
// with sequence parallelism x, h and y hold the rank's rows only (model/layer_util.h).
#include "model/layer_util.h"
#include "model/layers.h"
#include "model/weight_grads.h"

namespace zt {
namespace {

// out[n, d] += SwiGLU(x) with hidden `hid`; keeps a, b, s [n, hid] for backward.
void ffn_forward(float* out, const float* x, int n, int d, int hid, const float* w1,
                 const float* w2, const float* w3, float* a, float* b, float* s) {
  linear_forward(a, x, w1, n, d, hid);
  linear_forward(b, x, w3, n, d, hid);
  swiglu_forward(s, a, b, (int64_t)n * hid);
  linear_forward(out, s, w2, n, hid, d, /*accumulate=*/true);
}

// The weights and saved activations of one SwiGLU FFN's backward.
struct FfnSaved {
  const float *w1, *w2, *w3;
  float *dw1, *dw2, *dw3;
  const float *a, *b, *s;  // [n, hid] from forward
};

// dx += d/dx of the FFN given dout; the weight gradients through weight_grad, w1's and w3's
// unless `w13_later` (the caller runs ffn_backward_w13 while a sum of dx is in flight). Scratch
// [n, hid] comes from s.dha / dhb / dhs.
void ffn_backward(float* dx, const float* dout, const float* x, int n, int d, int hid,
                  const FfnSaved& f, GradScratch& s, std::vector<WeightGradJob>& jobs, bool defer,
                  bool w13_later = false) {
  const int64_t nh = (int64_t)n * hid;
  float* da = room(s.dha, nh);
  float* db = room(s.dhb, nh);
  float* ds = room(s.dhs, nh);
  zero(ds, nh);
  linear_backward_input(ds, dout, f.w2, n, hid, d);
  weight_grad(jobs, defer, f.dw2, f.s, dout, n, hid, d);
  zero(da, nh);
  zero(db, nh);
  swiglu_backward(da, db, ds, f.a, f.b, nh);
  linear_backward_input(dx, da, f.w1, n, d, hid);
  if (!w13_later) weight_grad(jobs, defer, f.dw1, x, da, n, d, hid);
  linear_backward_input(dx, db, f.w3, n, d, hid);
  if (!w13_later) weight_grad(jobs, defer, f.dw3, x, db, n, d, hid);
}

// The w1 / w3 weight gradients of the ffn_backward just run with w13_later.
void ffn_backward_w13(const float* x, int n, int d, int hid, const FfnSaved& f, GradScratch& s,
                      std::vector<WeightGradJob>& jobs, bool defer) {
  weight_grad(jobs, defer, f.dw1, x, s.dha.data(), n, d, hid);
  weight_grad(jobs, defer, f.dw3, x, s.dhb.data(), n, d, hid);
}

// h = x + att Wo (the attention's output projection, row-parallel under tp).
void attention_forward_half(Model& m, int l, Acts& a) {
  const ModelConfig& c = m.cfg;
  const int B = a.B, T = a.T, N = a.N, d = c.model_dim, dh = c.head_dim();
  const int H = m.dims.heads, dq = m.dims.qkv;  // this rank's heads
  const int64_t Nd = (int64_t)N * d, Nq = (int64_t)N * dq, Rd = (int64_t)a.rows * d;
  BlockActs& ba = a.blocks[l];
  const BlockParams& bp = m.blocks[l];
  const float* x = a.resid[l].data();  // [rows, d]
  float* xa = room(ba.xa, Nd);
  float *q = room(ba.q, Nq), *k = room(ba.k, Nq), *v = room(ba.v, Nq);
  norm_forward_gathered(m, a, TpPoint::attn_in, l, xa, room(ba.rstd_a, a.rows), x, bp.attn_norm);
  linear_forward(q, xa, m.param(bp.wq), N, d, dq);
  linear_forward(k, xa, m.param(bp.wk), N, d, dq);
  linear_forward(v, xa, m.param(bp.wv), N, d, dq);
  const int pos0 = a.kv ? a.kv->len : 0;
  rope_forward(q, q, B, T, H, dh, (float)c.rope_base, pos0);
  rope_forward(k, k, B, T, H, dh, (float)c.rope_base, pos0);
  float* att = room(ba.att, Nq);
  if (a.kv) {  // decoding one position (one rank): extend the cache, attend over all of it
    KVCache& kv = *a.kv;
    std::memcpy(kv.k[l].data() + (int64_t)pos0 * d, k, sizeof(float) * d);
    std::memcpy(kv.v[l].data() + (int64_t)pos0 * d, v, sizeof(float) * d);
    attention_decode_forward(att, q, kv.k[l].data(), kv.v[l].data(), pos0 + 1, H, dh, d,
                             room(ba.probs, kv.capacity));
  } else {
    attention_forward(att, room(ba.probs, (int64_t)B * H * T * T), q, k, v, B, T, H, dh);
  }
  float* h = room(ba.h, Rd);
  if (!m.tp) {
    copy(h, x, Nd);
    linear_forward(h, att, m.param(bp.wo), N, dq, d, /*accumulate=*/true);
    return;
  }
  float* part = a.sp ? room(a.full, Nd) : h;
  linear_forward(part, att, m.param(bp.wo), N, dq, d);
  complete_rows(m, a, TpPoint::attn_out, l, part, h, d).wait();
  add(h, x, Rd);
}

// y = h + FFN(RMSNorm_f(h)).
void ffn_forward_half(Model& m, int l, Acts& a, LossParts& out) {
  const ModelConfig& c = m.cfg;
  const int N = a.N, d = c.model_dim;
  const int64_t Nd = (int64_t)N * d, Rd = (int64_t)a.rows * d;
  BlockActs& ba = a.blocks[l];
  const BlockParams& bp = m.blocks[l];
  auto P = [&](int i) { return (const float*)m.param(i); };
  const float* h = ba.h.data();  // [rows, d]
  float* xf = room(ba.xf, Nd);
  norm_forward_gathered(m, a, TpPoint::ffn_in, l, xf, room(ba.rstd_f, a.rows), h, bp.ffn_norm);
  float* y_out = room(a.resid[l + 1], Rd);
  float* y = a.sp ? room(a.full, Nd) : y_out;  // where the FFN's output over all rows goes
  if (m.tp)
    zero(y, Nd);  // the FFN's partial output first, summed over tp, then the residual
  else
    copy(y, h, Nd);
  if (!c.is_moe(l)) {
    const int hid = m.dims.ffn;
    const int64_t nh = (int64_t)N * hid;
    ffn_forward(y, xf, N, d, hid, P(bp.ffn.w1), P(bp.ffn.w2), P(bp.ffn.w3), room(ba.fa, nh),
                room(ba.fb, nh), room(ba.fs, nh));
  } else {
    const int E = c.experts, K = c.top_k, eh = m.dims.expert_ffn, sh = m.dims.shared;
    float* rlogits = room(ba.rlogits, (int64_t)N * E);
    float* rprobs = room(ba.rprobs, (int64_t)N * E);
    float* gates = room(ba.gates, (int64_t)N * K);
    ba.idx.resize((size_t)N * K);
    linear_forward(rlogits, xf, P(bp.router), N, d, E);
    router_forward(rprobs, ba.idx.data(), gates, rlogits, N, E, K, c.router_norm);
    ba.aux = moe_aux_loss_forward(rprobs, ba.idx.data(), N, E, K, (float)c.aux_loss_coef);
    out.aux += ba.aux;
    moe_plan(ba.plan, ba.idx.data(), N, E, K,
             a.dropless ? 0 : moe_capacity(c.capacity_factor, N, K, E));
    out.dropped += ba.plan.dropped;
    const int64_t rd = (int64_t)N * K * d, rh = (int64_t)N * K * eh;
    float *xe = room(ba.xe, rd), *ye = room(ba.ye, rd);
    float *ea = room(ba.ea, rh), *eb = room(ba.eb, rh), *es = room(ba.es, rh);
    moe_dispatch_forward(xe, xf, ba.plan, d);
    zero(ye, (int64_t)ba.plan.rows() * d);
    for (int e = 0; e < E; ++e) {
      const int r0 = ba.plan.offset[e], nr = ba.plan.offset[e + 1] - r0;
      if (nr == 0) continue;
      const FfnParams& f = bp.experts[e];
      ffn_forward(ye + (int64_t)r0 * d, xe + (int64_t)r0 * d, nr, d, eh, P(f.w1), P(f.w2), P(f.w3),
                  ea + (int64_t)r0 * eh, eb + (int64_t)r0 * eh, es + (int64_t)r0 * eh);
    }
    moe_combine_forward(y, ye, gates, ba.plan, d);
    if (bp.shared.present()) {
      const int64_t ns = (int64_t)N * sh;
      ffn_forward(y, xf, N, d, sh, P(bp.shared.w1), P(bp.shared.w2), P(bp.shared.w3),
                  room(ba.sa, ns), room(ba.sb, ns), room(ba.ss, ns));
    }
  }
  if (m.tp) {
    complete_rows(m, a, TpPoint::ffn_out, l, y, y_out, d).wait();
    add(y_out, h, Rd);
  }
}

FfnSaved saved(Model& m, const FfnParams& f, const float* a, const float* b, const float* s) {
  return {m.param(f.w1),
          m.param(f.w2),
          m.param(f.w3),
          m.grad(f.w1),
          m.grad(f.w2),
          m.grad(f.w3),
          a,
          b,
          s};
}

// The FFN's input gradient given a.dres (the gradient at the block output), for the rank's rows:
// returns it (s.dxf, or s.dx_rows under sequence parallelism). Under tp its partial sum is in
// flight while the weight gradients that do not depend on it run.
float* ffn_backward_half(Model& m, int l, Acts& a, GradScratch& s, float loss_scale, bool defer) {
  const ModelConfig& c = m.cfg;
  const int N = a.N, d = c.model_dim;
  const int64_t Nd = (int64_t)N * d;
  BlockActs& ba = a.blocks[l];
  const BlockParams& bp = m.blocks[l];
  const float* dy = gather_rows(m, a, TpPoint::ffn_dout, l, a.dres.data(), s.dy_full, d);
  const float* xf = ba.xf.data();
  float* dxf = room(s.dxf, Nd);  // over all rows: a partial sum under tp
  float* dx_out = a.sp ? room(s.dx_rows, (int64_t)a.rows * d) : dxf;
  zero(dxf, Nd);
  if (!c.is_moe(l)) {
    const FfnSaved f = saved(m, bp.ffn, ba.fa.data(), ba.fb.data(), ba.fs.data());
    ffn_backward(dxf, dy, xf, N, d, m.dims.ffn, f, s, ba.wgrad, defer, /*w13_later=*/true);
    TpWait sum = complete_rows(m, a, TpPoint::ffn_dinput, l, dxf, dx_out, d);
    ffn_backward_w13(xf, N, d, m.dims.ffn, f, s, ba.wgrad, defer);
    sum.wait();
    return dx_out;
  }
  const int E = c.experts, K = c.top_k, eh = m.dims.expert_ffn;
  if (bp.shared.present())
    ffn_backward(dxf, dy, xf, N, d, m.dims.shared,
                 saved(m, bp.shared, ba.sa.data(), ba.sb.data(), ba.ss.data()), s, ba.wgrad, defer);
  const int rows = ba.plan.rows();
  float* dye = room(s.dye, (int64_t)N * K * d);
  float* dxe = room(s.dxe, (int64_t)N * K * d);
  float* dgates = room(s.dgates, (int64_t)N * K);
  zero(dye, (int64_t)rows * d);
  zero(dgates, (int64_t)N * K);
  moe_combine_backward(dye, dgates, dy, ba.ye.data(), ba.gates.data(), ba.plan, d);
  // The expert outputs are partial sums under tp, so their gates' gradient is too.
  TpWait gsum = m.tp ? m.tp->sum_partial(TpPoint::moe_dgates, l, dgates, (int64_t)N * K) : TpWait{};
  zero(dxe, (int64_t)rows * d);
  for (int e = 0; e < E; ++e) {
    const int r0 = ba.plan.offset[e], nr = ba.plan.offset[e + 1] - r0;
    if (nr == 0) continue;
    const int64_t rd = (int64_t)r0 * d, rh = (int64_t)r0 * eh;
    ffn_backward(dxe + rd, dye + rd, ba.xe.data() + rd, nr, d, eh,
                 saved(m, bp.experts[e], ba.ea.data() + rh, ba.eb.data() + rh, ba.es.data() + rh),
                 s, ba.wgrad, defer);
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
  return dx_out;
}

// dres: the gradient at h on entry, at the block input x on return (the rank's rows). Under tp
// the partial sum of the norm's input gradient is in flight while the q / k / v weight gradients
// run.
void attention_backward_half(Model& m, int l, Acts& a, GradScratch& s, bool defer) {
  const ModelConfig& c = m.cfg;
  const int B = a.B, T = a.T, N = a.N, d = c.model_dim, dh = c.head_dim();
  const int H = m.dims.heads, dq = m.dims.qkv;
  const int64_t Nd = (int64_t)N * d, Nq = (int64_t)N * dq;
  BlockActs& ba = a.blocks[l];
  const BlockParams& bp = m.blocks[l];
  float* dres = a.dres.data();
  const float* dh_all = gather_rows(m, a, TpPoint::attn_dout, l, dres, s.dy_full, d);
  float *datt = room(s.datt, Nq), *dqh = room(s.dq, Nq), *dk = room(s.dk, Nq);
  float *dv = room(s.dv, Nq), *dqr = room(s.dqr, Nq), *dkr = room(s.dkr, Nq);
  float* dxa = room(s.dxa, Nd);
  float* dx_out = a.sp ? room(s.dx_rows, (int64_t)a.rows * d) : dxa;
  zero(datt, Nq);
  linear_backward_input(datt, dh_all, m.param(bp.wo), N, dq, d);
  weight_grad(ba.wgrad, defer, m.grad(bp.wo), ba.att.data(), dh_all, N, dq, d);
  zero(dqh, Nq);
  zero(dk, Nq);
  zero(dv, Nq);
  attention_backward(dqh, dk, dv, datt, ba.probs.data(), ba.q.data(), ba.k.data(), ba.v.data(), B,
                     T, H, dh);
  zero(dqr, Nq);
  zero(dkr, Nq);
  rope_backward(dqr, dqh, B, T, H, dh, (float)c.rope_base);
  rope_backward(dkr, dk, B, T, H, dh, (float)c.rope_base);
  zero(dxa, Nd);
  const float* xa = ba.xa.data();
  const std::pair<int, const float*> qkv[] = {{bp.wq, dqr}, {bp.wk, dkr}, {bp.wv, dv}};
  for (auto [w, dout] : qkv) linear_backward_input(dxa, dout, m.param(w), N, d, dq);
  TpWait sum = complete_rows(m, a, TpPoint::attn_dinput, l, dxa, dx_out, d);
  for (auto [w, dout] : qkv) weight_grad(ba.wgrad, defer, m.grad(w), xa, dout, N, d, dq);
  sum.wait();
  norm_backward(m, a, l, dres, bp.attn_norm, dx_out, a.resid[l].data(), ba.rstd_a.data(), s);
}

}  // namespace

void block_forward(Model& m, int l, Acts& a, LossParts& out) {
  attention_forward_half(m, l, a);
  ffn_forward_half(m, l, a, out);
}

void block_backward(Model& m, int l, Acts& a, GradScratch& s, float loss_scale, bool defer) {
  BlockActs& ba = a.blocks[l];
  const float* dxf = ffn_backward_half(m, l, a, s, loss_scale, defer);
  // dres += RMSNorm_f backward of dxf: the gradient at h
  norm_backward(m, a, l, a.dres.data(), m.blocks[l].ffn_norm, dxf, ba.h.data(), ba.rstd_f.data(),
                s);
  attention_backward_half(m, l, a, s, defer);
  if (defer) {  // the weight pass reads xa, att, xf, the SwiGLU outputs, xe and its kept copies
    for (Buffer<float>* b :
         {&ba.q, &ba.k, &ba.v, &ba.h, &ba.rstd_a, &ba.rstd_f, &ba.probs, &ba.fa, &ba.fb,
          &ba.rlogits, &ba.rprobs, &ba.gates, &ba.ye, &ba.ea, &ba.eb, &ba.sa, &ba.sb})
      b->reset(0, MemCategory::activations);
  }
}

void block_backward_weight(Model&, int l, Acts& a) { run_weight_grads(a.blocks[l].wgrad); }

}  // namespace zt
