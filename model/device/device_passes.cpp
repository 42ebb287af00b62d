// device_passes.cpp: the passes of device_passes.h. Each layer is the host layer's (block.cpp,
// moe_layer.cpp, embed_head.cpp) without the tensor-parallel, expert-parallel, QAT and deferred
// weight-gradient branches, its ops from dev_ops.h in the host's order, so that on the CPU the
// bits are the host passes' (tests/unit/test_device_passes.cpp).
#include "model/device/device_passes.h"

#include "runtime/error.h"

namespace zt {
namespace {

float* room(DeviceKind k, DevBuf<float>& b, int64_t n) { return b.room(k, (size_t)n); }

// The token ids as the ops read them: the host's on the CPU, the device copy on a GPU.
const int32_t* ids(DeviceKind k, const std::vector<int32_t>& host, const DevBuf<int32_t>& dev) {
  return k == DeviceKind::cpu ? host.data() : dev.data();
}

// out[n, d] (+= or =) SwiGLU(x) with hidden `hid`; keeps a, b, s [n, hid] (ffn.h's ffn_forward).
void ffn_forward(DeviceModel& m, const FfnParams& f, float* out, const float* x, int n, int d,
                 int hid, float* a, float* b, float* s, bool accumulate = true) {
  const DeviceKind k = m.kind;
  dev::linear_forward(k, a, x, m.param(f.w1), n, d, hid);
  dev::linear_forward(k, b, x, m.param(f.w3), n, d, hid);
  dev::swiglu_forward(k, s, a, b, (int64_t)n * hid);
  dev::linear_forward(k, out, s, m.param(f.w2), n, hid, d, accumulate);
}

// dx += the FFN's input gradient given dout, and its weight gradients (ffn.h's ffn_backward).
void ffn_backward(DeviceModel& m, const FfnParams& f, float* dx, const float* dout, const float* x,
                  int n, int d, int hid, const float* a, const float* b, const float* s,
                  DeviceScratch& sc) {
  const DeviceKind k = m.kind;
  const int64_t nh = (int64_t)n * hid;
  float *da = room(k, sc.dha, nh), *db = room(k, sc.dhb, nh), *ds = room(k, sc.dhs, nh);
  dev::zero(k, ds, nh);
  dev::linear_backward_input(k, ds, dout, m.param(f.w2), n, hid, d);
  dev::linear_backward_weight(k, m.grad(f.w2), dout, s, n, hid, d);
  dev::zero(k, da, nh);
  dev::zero(k, db, nh);
  dev::swiglu_backward(k, da, db, ds, a, b, nh);
  dev::linear_backward_input(k, dx, da, m.param(f.w1), n, d, hid);
  dev::linear_backward_input(k, dx, db, m.param(f.w3), n, d, hid);
  dev::linear_backward_weight(k, m.grad(f.w1), da, x, n, d, hid);
  dev::linear_backward_weight(k, m.grad(f.w3), db, x, n, d, hid);
}

void embed_forward(DeviceModel& m, DeviceActs& a) {
  const int d = m.host.cfg.model_dim;
  float* x0 = room(m.kind, a.resid[0], (int64_t)a.N * d);
  dev::embedding_forward(m.kind, x0, ids(m.kind, a.inputs, a.d_inputs), m.param(m.host.embed), a.N,
                         d);
}

void embed_backward(DeviceModel& m, DeviceActs& a) {
  dev::embedding_backward(m.kind, m.grad(m.host.embed), a.dres.data(),
                          ids(m.kind, a.inputs, a.d_inputs), a.N, m.host.cfg.model_dim);
}

// h = x + Attn(RMSNorm_a(x))
void attention_forward_half(DeviceModel& m, int l, DeviceActs& a) {
  const Model& hm = m.host;
  const ModelConfig& c = hm.cfg;
  const DeviceKind k = m.kind;
  const int B = a.B, T = a.T, N = a.N, d = c.model_dim, dh = c.head_dim();
  const int H = hm.dims.heads, dq = hm.dims.qkv;
  const int64_t Nd = (int64_t)N * d, Nq = (int64_t)N * dq;
  DeviceBlockActs& ba = a.blocks[l];
  const BlockParams& bp = hm.blocks[l];
  const float* x = a.resid[l].data();
  float* xa = room(k, ba.xa, Nd);
  float *q = room(k, ba.q, Nq), *kk = room(k, ba.k, Nq), *v = room(k, ba.v, Nq);
  dev::rmsnorm_forward(k, xa, room(k, ba.rstd_a, N), x, m.param(bp.attn_norm), N, d, c.norm_eps);
  dev::linear_forward(k, q, xa, m.param(bp.wq), N, d, dq);
  dev::linear_forward(k, kk, xa, m.param(bp.wk), N, d, dq);
  dev::linear_forward(k, v, xa, m.param(bp.wv), N, d, dq);
  dev::rope_forward(k, q, q, B, T, H, dh, (float)c.rope_base);
  dev::rope_forward(k, kk, kk, B, T, H, dh, (float)c.rope_base);
  float* att = room(k, ba.att, Nq);
  float* saved = room(k, ba.saved, dev::attention_saved_size(k, B, T, H));
  dev::attention_forward(k, att, saved, q, kk, v, B, T, H, dh);
  float* h = room(k, ba.h, Nd);
  dev::copy(k, h, x, Nd);
  dev::linear_forward(k, h, att, m.param(bp.wo), N, dq, d, /*accumulate=*/true);
}

void add_load(LossParts& out, const ModelConfig& c, int l, const std::vector<int32_t>& idx) {
  if (out.load.empty()) out.load.assign(load_size(c), 0);
  int64_t* block = out.load.data() + (int64_t)l * c.experts;
  for (int32_t e : idx) ++block[e];
}

// y += the routed experts' gated outputs and the shared expert's over xf.
void moe_forward(DeviceModel& m, int l, DeviceActs& a, const float* xf, float* y, LossParts& out) {
  const Model& hm = m.host;
  const ModelConfig& c = hm.cfg;
  const DeviceKind k = m.kind;
  const int N = a.N, d = c.model_dim, E = c.experts, K = c.top_k, eh = hm.dims.expert_ffn;
  DeviceBlockActs& ba = a.blocks[l];
  const BlockParams& bp = hm.blocks[l];
  float* rlogits = room(k, ba.rlogits, (int64_t)N * E);
  float* rprobs = room(k, ba.rprobs, (int64_t)N * E);
  float* gates = room(k, ba.gates, (int64_t)N * K);
  int32_t* idx = ba.idx.room(k, (size_t)N * K);
  dev::linear_forward(k, rlogits, xf, m.param(bp.router), N, d, E);
  dev::router_forward(k, rprobs, idx, ba.idx_host, gates, rlogits, N, E, K, c.router_norm);
  out.aux += dev::moe_aux_loss_forward(k, rprobs, ba.idx_host, N, E, K, (float)c.aux_loss_coef);
  add_load(out, c, l, ba.idx_host);
  MoePlan& plan = ba.plan.plan;
  moe_plan(plan, ba.idx_host.data(), N, E, K, moe_capacity(c.capacity_factor, N, K, E));
  ba.plan.upload(k);
  out.dropped += plan.dropped;
  const int rows = plan.rows();
  const int64_t rd = (int64_t)rows * d, rh = (int64_t)rows * eh;
  float *xe = room(k, ba.xe, rd), *ye = room(k, ba.ye, rd);
  dev::moe_dispatch_forward(k, xe, xf, ba.plan, d);
  float *ea = room(k, ba.ea, rh), *eb = room(k, ba.eb, rh), *es = room(k, ba.es, rh);
  for (int e = 0; e < hm.dims.experts; ++e) {
    const int r0 = plan.offset[e], nr = plan.offset[e + 1] - r0;
    if (nr == 0) continue;
    const int64_t o = (int64_t)r0 * eh;
    ffn_forward(m, bp.experts[e], ye + (int64_t)r0 * d, xe + (int64_t)r0 * d, nr, d, eh, ea + o,
                eb + o, es + o, /*accumulate=*/false);
  }
  dev::moe_combine_forward(k, y, ye, gates, ba.plan, d);
  if (bp.shared.present()) {
    const int64_t ns = (int64_t)N * hm.dims.shared;
    ffn_forward(m, bp.shared, y, xf, N, d, hm.dims.shared, room(k, ba.sa, ns), room(k, ba.sb, ns),
                room(k, ba.ss, ns));
  }
}

// resid[l + 1] = h + FFN(RMSNorm_f(h))
void ffn_forward_half(DeviceModel& m, int l, DeviceActs& a, LossParts& out) {
  const Model& hm = m.host;
  const ModelConfig& c = hm.cfg;
  const DeviceKind k = m.kind;
  const int N = a.N, d = c.model_dim;
  const int64_t Nd = (int64_t)N * d;
  DeviceBlockActs& ba = a.blocks[l];
  const BlockParams& bp = hm.blocks[l];
  const float* h = ba.h.data();
  float* xf = room(k, ba.xf, Nd);
  dev::rmsnorm_forward(k, xf, room(k, ba.rstd_f, N), h, m.param(bp.ffn_norm), N, d, c.norm_eps);
  float* y = room(k, a.resid[l + 1], Nd);
  dev::copy(k, y, h, Nd);
  if (c.is_moe(l)) return moe_forward(m, l, a, xf, y, out);
  const int64_t nh = (int64_t)N * hm.dims.ffn;
  ffn_forward(m, bp.ffn, y, xf, N, d, hm.dims.ffn, room(k, ba.fa, nh), room(k, ba.fb, nh),
              room(k, ba.fs, nh));
}

void head_forward(DeviceModel& m, DeviceActs& a, LossParts& out) {
  const Model& hm = m.host;
  const DeviceKind k = m.kind;
  const int N = a.N, d = hm.cfg.model_dim, V = hm.dims.vocab;
  float* xn = room(k, a.xn, (int64_t)N * d);
  float* logits = room(k, a.logits, (int64_t)N * V);
  dev::rmsnorm_forward(k, xn, room(k, a.rstd, N), a.resid[hm.cfg.layers].data(),
                       m.param(hm.final_norm), N, d, hm.cfg.norm_eps);
  if (hm.cfg.untie_embeddings)
    dev::linear_forward(k, logits, xn, m.param(hm.head), N, d, V);
  else  // logits = xn E^T, E [V, d]
    dev::matmul(k, logits, xn, m.param(hm.embed), N, V, d, false, true);
  out.ce = dev::cross_entropy_forward(k, room(k, a.losses, N), logits,
                                      ids(k, a.targets, a.d_targets), N, V);
}

void head_backward(DeviceModel& m, DeviceActs& a, DeviceScratch& s, float loss_scale) {
  const Model& hm = m.host;
  const DeviceKind k = m.kind;
  const int N = a.N, d = hm.cfg.model_dim, V = hm.dims.vocab;
  const int64_t Nd = (int64_t)N * d;
  float* dlogits = room(k, s.dlogits, (int64_t)N * V);
  dev::zero(k, dlogits, (int64_t)N * V);
  dev::cross_entropy_backward(k, dlogits, a.logits.data(), ids(k, a.targets, a.d_targets),
                              loss_scale / N, N, V);
  float* dxn = room(k, s.dxa, Nd);
  dev::zero(k, dxn, Nd);
  if (hm.cfg.untie_embeddings) {
    dev::linear_backward_input(k, dxn, dlogits, m.param(hm.head), N, d, V);
    dev::linear_backward_weight(k, m.grad(hm.head), dlogits, a.xn.data(), N, d, V);
  } else {  // dxn += dlogits E, dE += dlogits^T xn
    dev::matmul(k, dxn, dlogits, m.param(hm.embed), N, d, V, false, false, true);
    dev::linear_backward_weight(k, m.grad(hm.embed), a.xn.data(), dlogits, N, V, d);
  }
  float* dres = room(k, a.dres, Nd);
  dev::zero(k, dres, Nd);
  dev::rmsnorm_backward(k, dres, m.grad(hm.final_norm), dxn, a.resid[hm.cfg.layers].data(),
                        m.param(hm.final_norm), a.rstd.data(), N, d);
}

// dxf += the MoE FFN's input gradient given dy (moe_layer.cpp's moe_backward on one rank).
void moe_backward(DeviceModel& m, int l, DeviceActs& a, DeviceScratch& s, float loss_scale,
                  const float* dy, float* dxf) {
  const Model& hm = m.host;
  const ModelConfig& c = hm.cfg;
  const DeviceKind k = m.kind;
  const int N = a.N, d = c.model_dim, E = c.experts, K = c.top_k, eh = hm.dims.expert_ffn;
  DeviceBlockActs& ba = a.blocks[l];
  const BlockParams& bp = hm.blocks[l];
  const MoePlan& plan = ba.plan.plan;
  const float* xf = ba.xf.data();
  const int rows = plan.rows();
  const int64_t rd = (int64_t)rows * d;
  float *dye = room(k, s.dye, rd), *dxe = room(k, s.dxe, rd);
  float* dgates = room(k, s.dgates, (int64_t)N * K);
  dev::zero(k, dye, rd);
  dev::zero(k, dgates, (int64_t)N * K);
  dev::moe_combine_backward(k, dye, dgates, dy, ba.ye.data(), ba.gates.data(), ba.plan, d);
  if (bp.shared.present())
    ffn_backward(m, bp.shared, dxf, dy, xf, N, d, hm.dims.shared, ba.sa.data(), ba.sb.data(),
                 ba.ss.data(), s);
  dev::zero(k, dxe, rd);
  for (int e = 0; e < hm.dims.experts; ++e) {
    const int r0 = plan.offset[e], nr = plan.offset[e + 1] - r0;
    if (nr == 0) continue;
    const int64_t o = (int64_t)r0 * d, oh = (int64_t)r0 * eh;
    ffn_backward(m, bp.experts[e], dxe + o, dye + o, ba.xe.data() + o, nr, d, eh, ba.ea.data() + oh,
                 ba.eb.data() + oh, ba.es.data() + oh, s);
  }
  dev::moe_dispatch_backward(k, dxf, dxe, ba.plan, d);
  float* dprobs = room(k, s.dprobs, (int64_t)N * E);
  float* drlogits = room(k, s.drlogits, (int64_t)N * E);
  dev::zero(k, dprobs, (int64_t)N * E);
  dev::moe_aux_loss_backward(k, dprobs, ba.idx_host, N, E, K, (float)c.aux_loss_coef, loss_scale,
                             s.aux);
  dev::zero(k, drlogits, (int64_t)N * E);
  dev::router_backward(k, drlogits, dgates, dprobs, ba.rprobs.data(), ids(k, ba.idx_host, ba.idx),
                       N, E, K, c.router_norm);
  dev::linear_backward_weight(k, m.grad(bp.router), drlogits, xf, N, d, E);
  dev::linear_backward_input(k, dxf, drlogits, m.param(bp.router), N, d, E);
}

// a.dres: the gradient at the block's output on entry, at its input on return.
void block_backward(DeviceModel& m, int l, DeviceActs& a, DeviceScratch& s, float loss_scale) {
  const Model& hm = m.host;
  const ModelConfig& c = hm.cfg;
  const DeviceKind k = m.kind;
  const int B = a.B, T = a.T, N = a.N, d = c.model_dim, dh = c.head_dim();
  const int H = hm.dims.heads, dq = hm.dims.qkv;
  const int64_t Nd = (int64_t)N * d, Nq = (int64_t)N * dq;
  DeviceBlockActs& ba = a.blocks[l];
  const BlockParams& bp = hm.blocks[l];
  float* dres = a.dres.data();
  // FFN half: dres += RMSNorm_f backward of the FFN's input gradient
  float* dxf = room(k, s.dxf, Nd);
  dev::zero(k, dxf, Nd);
  if (c.is_moe(l)) {
    moe_backward(m, l, a, s, loss_scale, dres, dxf);
  } else {
    ffn_backward(m, bp.ffn, dxf, dres, ba.xf.data(), N, d, hm.dims.ffn, ba.fa.data(), ba.fb.data(),
                 ba.fs.data(), s);
  }
  dev::rmsnorm_backward(k, dres, m.grad(bp.ffn_norm), dxf, ba.h.data(), m.param(bp.ffn_norm),
                        ba.rstd_f.data(), N, d);
  // attention half
  float *datt = room(k, s.datt, Nq), *dqh = room(k, s.dq, Nq), *dk = room(k, s.dk, Nq);
  float *dv = room(k, s.dv, Nq), *dqr = room(k, s.dqr, Nq), *dkr = room(k, s.dkr, Nq);
  float* dxa = room(k, s.dxa, Nd);
  dev::linear_backward_input(k, datt, dres, m.param(bp.wo), N, dq, d, /*accumulate=*/false);
  dev::linear_backward_weight(k, m.grad(bp.wo), dres, ba.att.data(), N, dq, d);
  dev::attention_backward(k, dqh, dk, dv, datt, ba.att.data(), ba.saved.data(), ba.q.data(),
                          ba.k.data(), ba.v.data(), B, T, H, dh, room(k, s.att, (int64_t)B * H * T),
                          /*accumulate=*/false);
  dev::rope_backward(k, dqr, dqh, B, T, H, dh, (float)c.rope_base, /*accumulate=*/false);
  dev::rope_backward(k, dkr, dk, B, T, H, dh, (float)c.rope_base, /*accumulate=*/false);
  const float* xa = ba.xa.data();
  const std::pair<int, const float*> qkv[] = {{bp.wq, dqr}, {bp.wk, dkr}, {bp.wv, dv}};
  for (auto [w, dout] : qkv)
    dev::linear_backward_input(k, dxa, dout, m.param(w), N, d, dq, /*accumulate=*/w != bp.wq);
  for (auto [w, dout] : qkv) dev::linear_backward_weight(k, m.grad(w), dout, xa, N, d, dq);
  dev::rmsnorm_backward(k, dres, m.grad(bp.attn_norm), dxa, a.resid[l].data(),
                        m.param(bp.attn_norm), ba.rstd_a.data(), N, d);
}

}  // namespace

std::string device_supports(const Model& m) {
  if (m.tp || m.slice.size > 1) return "tensor parallelism (--tp)";
  if (m.ep || m.eslice.size > 1) return "expert parallelism (--ep)";
  for (bool own : m.owned)
    if (!own) return "pipeline parallelism (--pp)";
  if (m.cfg.qat.on()) return "quantization-aware training (--qat)";
  return "";
}

DeviceModel::DeviceModel(const Model& h, DeviceKind k) : host(h), kind(k) {
  const std::string why = device_supports(h);
  if (!why.empty()) fail("training on ", device_name(k), " does not run ", why, " yet");
  const int U = h.table.num_units();
  params.resize(U);
  grads.resize(U);
  for (int u = 0; u < U; ++u) {
    params[u].reset(k, (size_t)h.table.unit_numel(u), MemCategory::params);
    grads[u].reset(k, (size_t)h.table.unit_numel(u), MemCategory::grads);
  }
}

const float* DeviceModel::param(int idx) const {
  const ParamSpec& p = host.table.params[idx];
  return params[p.unit].data() + p.offset;
}

float* DeviceModel::grad(int idx) {
  const ParamSpec& p = host.table.params[idx];
  return grads[p.unit].data() + p.offset;
}

void DeviceModel::upload_params(int unit, const float* src) {
  dev::upload(kind, params[unit].data(), src, sizeof(float) * params[unit].size());
}

void DeviceModel::zero_grads(int unit) {
  dev::zero(kind, grads[unit].data(), (int64_t)grads[unit].size());
}

void DeviceModel::upload_grads(int unit, const float* src) {
  dev::upload(kind, grads[unit].data(), src, sizeof(float) * grads[unit].size());
}

void DeviceModel::download_grads(int unit, float* dst) {
  dev::download(kind, dst, grads[unit].data(), sizeof(float) * grads[unit].size());
}

LossParts device_forward(DeviceModel& m, DeviceActs& a, const int32_t* tokens, int B, int T,
                         const UnitHooks* hooks, bool backward_next) {
  const Model& hm = m.host;
  const DeviceKind k = m.kind;
  split_tokens(hm.cfg, tokens, B, T, a.inputs, a.targets);
  if (a.B != B || a.T != T || (int)a.blocks.size() != hm.cfg.layers) {
    a.resid.clear();
    a.resid.resize(hm.cfg.layers + 1);
    a.blocks.clear();
    a.blocks.resize(hm.cfg.layers);
  }
  a.B = B, a.T = T, a.N = B * T;
  if (k != DeviceKind::cpu) {
    a.d_inputs.room(k, a.inputs.size());
    a.d_targets.room(k, a.targets.size());
    dev::upload(k, a.d_inputs.data(), a.inputs.data(), sizeof(int32_t) * a.inputs.size());
    dev::upload(k, a.d_targets.data(), a.targets.data(), sizeof(int32_t) * a.targets.size());
  }
  LossParts out;
  forward_in_order(hm, hooks, backward_next,
                   {[&] { embed_forward(m, a); },
                    [&](int l) {
                      attention_forward_half(m, l, a);
                      ffn_forward_half(m, l, a, out);
                    },
                    [&] { head_forward(m, a, out); }});
  return out;
}

void device_backward(DeviceModel& m, DeviceActs& a, DeviceScratch& s, float loss_scale,
                     const UnitHooks* hooks) {
  backward_in_order(
      m.host, hooks,
      {[&] { embed_backward(m, a); }, [&](int l) { block_backward(m, l, a, s, loss_scale); },
       [&] { head_backward(m, a, s, loss_scale); }});
}

}  // namespace zt
