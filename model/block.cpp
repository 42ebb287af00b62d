// block.cpp: one transformer block of layers.h, forward and backward.
//   h = x + Attn(RMSNorm_a(x));  y = h + FFN_l(RMSNorm_f(h))          (SPEC section 1)
// FFN_l is the dense SwiGLU, or the MoE: router, top-k dispatch, experts, gated combine, plus the
// shared expert. Under tensor parallelism (Model::tp) the row-parallel outputs and the
// column-parallel input gradients go through the hook (model/tp_hook.h) before they are used;
// with sequence parallelism x, h and y hold the rank's rows only (model/layer_util.h).
#include "model/ffn.h"
#include "model/layers.h"

namespace zt {
namespace {

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
  qat_input(m, xa, N, d);
  qat_linear_forward(m, bp.wq, q, xa, N, d, dq);
  qat_linear_forward(m, bp.wk, k, xa, N, d, dq);
  qat_linear_forward(m, bp.wv, v, xa, N, d, dq);
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
  qat_input_split(m, att, N, dq);
  float* h = room(ba.h, Rd);
  if (!m.tp) {
    copy(h, x, Nd);
    qat_linear_forward(m, bp.wo, h, att, N, dq, d, /*accumulate=*/true);
    return;
  }
  float* part = a.sp ? room(a.full, Nd) : h;
  qat_linear_forward(m, bp.wo, part, att, N, dq, d);
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
    qat_input(m, xf, N, d);  // the dense FFN is xf's only reader
    ffn_forward(m, bp.ffn, y, xf, N, d, hid, room(ba.fa, nh), room(ba.fb, nh), room(ba.fs, nh));
  } else {
    moe_forward(m, l, a, xf, y, out);
  }
  if (m.tp) {
    complete_rows(m, a, TpPoint::ffn_out, l, y, y_out, d).wait();
    add(y_out, h, Rd);
  }
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
  moe_backward(m, l, a, s, loss_scale, defer, dy, dxf, dx_out);
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
  // The first product into each scratch buffer overwrites it (no zeroing pass), the rest add.
  linear_backward_input(datt, dh_all, qat_weight(m, bp.wo), N, dq, d, /*accumulate=*/false);
  qat_weight_grad(m, ba.wgrad, defer, bp.wo, ba.att.data(), dh_all, N, dq, d);
  attention_backward(dqh, dk, dv, datt, ba.probs.data(), ba.q.data(), ba.k.data(), ba.v.data(), B,
                     T, H, dh, /*accumulate=*/false);
  rope_backward(dqr, dqh, B, T, H, dh, (float)c.rope_base, 0, /*accumulate=*/false);
  rope_backward(dkr, dk, B, T, H, dh, (float)c.rope_base, 0, /*accumulate=*/false);
  const float* xa = ba.xa.data();
  const std::pair<int, const float*> qkv[] = {{bp.wq, dqr}, {bp.wk, dkr}, {bp.wv, dv}};
  for (auto [w, dout] : qkv)
    linear_backward_input(dxa, dout, qat_weight(m, w), N, d, dq, /*accumulate=*/w != bp.wq);
  TpWait sum = complete_rows(m, a, TpPoint::attn_dinput, l, dxa, dx_out, d);
  for (auto [w, dout] : qkv) qat_weight_grad(m, ba.wgrad, defer, w, xa, dout, N, d, dq);
  sum.wait();
  norm_backward(m, a, l, dres, bp.attn_norm, dx_out, a.resid[l].data(), ba.rstd_a.data(), s);
}

}  // namespace

void block_forward(Model& m, int l, Acts& a, LossParts& out) {
  attention_forward_half(m, l, a);
  ffn_forward_half(m, l, a, out);
  qat_release(m, l);
}

void block_backward(Model& m, int l, Acts& a, GradScratch& s, float loss_scale, bool defer) {
  BlockActs& ba = a.blocks[l];
  const float* dxf = ffn_backward_half(m, l, a, s, loss_scale, defer);
  // dres += RMSNorm_f backward of dxf: the gradient at h
  norm_backward(m, a, l, a.dres.data(), m.blocks[l].ffn_norm, dxf, ba.h.data(), ba.rstd_f.data(),
                s);
  attention_backward_half(m, l, a, s, defer);
  qat_release(m, l);
  if (defer) {  // the weight pass reads xa, att, xf, the SwiGLU outputs, xe and its kept copies
    for (Buffer<float>* b :
         {&ba.q, &ba.k, &ba.v, &ba.h, &ba.rstd_a, &ba.rstd_f, &ba.probs, &ba.fa, &ba.fb,
          &ba.rlogits, &ba.rprobs, &ba.gates, &ba.ye, &ba.ea, &ba.eb, &ba.sa, &ba.sb})
      b->reset(0, MemCategory::activations);
  }
}

void block_backward_weight(Model&, int l, Acts& a) { run_weight_grads(a.blocks[l].wgrad); }

}  // namespace zt
