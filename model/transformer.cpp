// transformer.cpp: forward and backward of the MoE transformer over one microbatch.
// Block l:  h = x + Attn(RMSNorm_a(x));  x' = h + FFN_l(RMSNorm_f(h))   (SPEC section 1)
// Every activation backward needs is kept in Acts; scratch gradients are reused across blocks.
#include "model/transformer.h"

#include <algorithm>
#include <cstring>

#include "runtime/error.h"

namespace zt {
namespace {

void zero(float* p, int64_t n) { std::memset(p, 0, sizeof(float) * (size_t)n); }
void copy(float* dst, const float* src, int64_t n) {
  std::memcpy(dst, src, sizeof(float) * (size_t)n);
}

struct FfnIdx {  // parameter indices of one SwiGLU FFN
  int w1 = -1, w2 = -1, w3 = -1;
};
struct BlockIdx {
  int attn_norm, wq, wk, wv, wo, ffn_norm;
  FfnIdx ffn;                   // dense blocks
  int router = -1;              // MoE blocks
  std::vector<FfnIdx> experts;  // [E]
  FfnIdx shared;                // w1 == -1 when there is no shared expert
};

}  // namespace

struct LayerActs {
  Buffer<float> xa, q, k, v, probs, att, h, xf, out, rstd_a, rstd_f;  // [N, d] unless noted
  Buffer<float> fa, fb, fs;                                           // dense FFN [N, ffn_dim]
  // MoE
  Buffer<float> rlogits, rprobs, gates;  // [N, E], [N, E], [N, K]
  std::vector<int32_t> idx;              // [N, K]
  MoePlan plan;
  Buffer<float> xe, ye;      // [N*K, d]
  Buffer<float> ea, eb, es;  // [N*K, expert_ffn_dim]
  Buffer<float> sa, sb, ss;  // shared [N, shared hidden]
  double aux = 0;
};

struct Transformer::Acts {
  int B = 0, T = 0, N = 0;
  std::vector<int32_t> inputs, targets;  // [N]
  Buffer<float> x0;                      // [N, d] embedding output
  std::vector<LayerActs> layers;
  Buffer<float> xn, rstd, logits, losses;  // final norm [N, d], [N]; logits [N, V]; [N]
  // backward scratch
  Buffer<float> dres, dxf, datt, dq, dk, dv, dqr, dkr, dxa;  // [N, d]
  Buffer<float> dlogits;                                     // [N, V]
  Buffer<float> dha, dhb, dhs;                               // [max hidden rows * hidden]
  Buffer<float> dye, dxe;                                    // [N*K, d]
  Buffer<float> dgates, dprobs, drlogits;                    // [N, K], [N, E], [N, E]
  std::vector<BlockIdx> blk;
  int embed = -1, final_norm = -1, head = -1;
};

namespace {

using Acts = Transformer::Acts;
constexpr auto kAct = MemCategory::activations;

// out[n, d] += SwiGLU(x) with hidden `hid`; keeps a, b, s [n, hid] for backward.
void ffn_forward(float* out, const float* x, int n, int d, int hid, const float* w1,
                 const float* w2, const float* w3, float* a, float* b, float* s) {
  linear_forward(a, x, w1, n, d, hid);
  linear_forward(b, x, w3, n, d, hid);
  swiglu_forward(s, a, b, (int64_t)n * hid);
  linear_forward(out, s, w2, n, hid, d, /*accumulate=*/true);
}

// dx += d/dx, dw* += d/dw* of the FFN given dout; da, db, ds are scratch [n, hid].
void ffn_backward(float* dx, float* dw1, float* dw2, float* dw3, const float* dout, const float* x,
                  int n, int d, int hid, const float* w1, const float* w2, const float* w3,
                  const float* a, const float* b, const float* s, float* da, float* db, float* ds) {
  int64_t nh = (int64_t)n * hid;
  zero(ds, nh);
  linear_backward(ds, dw2, dout, s, w2, n, hid, d);
  zero(da, nh);
  zero(db, nh);
  swiglu_backward(da, db, ds, a, b, nh);
  linear_backward(dx, dw1, da, x, w1, n, d, hid);
  linear_backward(dx, dw3, db, x, w3, n, d, hid);
}

}  // namespace

Transformer::Transformer(const ModelConfig& c, uint64_t seed, bool with_grads)
    : cfg(c), table(build_param_table(c)), with_grads_(with_grads) {
  cfg.validate();
  int U = table.num_units();
  own_params_.resize(U);
  own_grads_.resize(U);
  unit_params.resize(U);
  unit_grads.resize(U, nullptr);
  for (int u = 0; u < U; ++u) {
    own_params_[u].reset(table.unit_numel[u], MemCategory::params);
    unit_params[u] = own_params_[u].data();
    init_unit_params(unit_params[u], table, u, seed);
    if (with_grads) {
      own_grads_[u].reset(table.unit_numel[u], MemCategory::grads);
      unit_grads[u] = own_grads_[u].data();
    }
  }
  acts_ = new Acts();
  Acts& a = *acts_;
  a.embed = table.find("embed");
  a.final_norm = table.find("final_norm");
  a.head = c.untie_embeddings ? table.find("head") : a.embed;
  auto ffn_idx = [&](const std::string& p) {
    return FfnIdx{table.find(p + ".w1"), table.find(p + ".w2"), table.find(p + ".w3")};
  };
  for (int l = 0; l < c.layers; ++l) {
    std::string b = "blocks." + std::to_string(l);
    BlockIdx bi{table.find(b + ".attn_norm"),
                table.find(b + ".attn.wq"),
                table.find(b + ".attn.wk"),
                table.find(b + ".attn.wv"),
                table.find(b + ".attn.wo"),
                table.find(b + ".ffn_norm"),
                {},
                -1,
                {},
                {}};
    if (!c.is_moe(l)) {
      bi.ffn = ffn_idx(b + ".ffn");
    } else {
      bi.router = table.find(b + ".moe.router");
      for (int e = 0; e < c.experts; ++e)
        bi.experts.push_back(ffn_idx(b + ".moe.experts." + std::to_string(e)));
      if (c.shared_experts > 0) bi.shared = ffn_idx(b + ".moe.shared");
    }
    a.blk.push_back(std::move(bi));
  }
}

Transformer::~Transformer() { delete acts_; }

float* Transformer::param(const std::string& name) {
  const ParamSpec& p = table.at(name);
  return unit_params[p.unit] + p.offset;
}
float* Transformer::grad(const std::string& name) {
  const ParamSpec& p = table.at(name);
  ZT_CHECK(unit_grads[p.unit], "model was built without gradients");
  return unit_grads[p.unit] + p.offset;
}

void Transformer::zero_grads() {
  for (int u = 0; u < table.num_units(); ++u)
    if (unit_grads[u]) zero(unit_grads[u], table.unit_numel[u]);
}

void Transformer::release_own_storage() {
  own_params_.clear();
  own_grads_.clear();
}

const float* Transformer::logits() const { return acts_->logits.data(); }
const float* Transformer::hidden(int i) const {
  return i == 0 ? acts_->x0.data() : acts_->layers[i - 1].out.data();
}

static void ensure_acts(Acts& a, const ModelConfig& c, int B, int T) {
  if (a.B == B && a.T == T) return;
  const int64_t N = (int64_t)B * T, d = c.model_dim, V = c.vocab, E = c.experts, K = c.top_k;
  const int64_t eh = c.expert_ffn_dim, sh = (int64_t)c.shared_experts * c.expert_ffn_dim;
  a.B = B, a.T = T, a.N = (int)N;
  a.inputs.assign(N, 0);
  a.targets.assign(N, 0);
  a.x0.reset(N * d, kAct);
  a.layers.clear();
  a.layers.resize(c.layers);
  int64_t max_hidden = 0;
  for (int l = 0; l < c.layers; ++l) {
    LayerActs& la = a.layers[l];
    for (Buffer<float>* b : {&la.xa, &la.q, &la.k, &la.v, &la.att, &la.h, &la.xf, &la.out})
      b->reset(N * d, kAct);
    la.rstd_a.reset(N, kAct);
    la.rstd_f.reset(N, kAct);
    la.probs.reset((int64_t)B * c.heads * T * T, kAct);
    if (!c.is_moe(l)) {
      for (Buffer<float>* b : {&la.fa, &la.fb, &la.fs}) b->reset(N * c.ffn_dim, kAct);
      max_hidden = std::max(max_hidden, N * c.ffn_dim);
    } else {
      la.rlogits.reset(N * E, kAct);
      la.rprobs.reset(N * E, kAct);
      la.gates.reset(N * K, kAct);
      la.idx.assign(N * K, 0);
      la.xe.reset(N * K * d, kAct);
      la.ye.reset(N * K * d, kAct);
      for (Buffer<float>* b : {&la.ea, &la.eb, &la.es}) b->reset(N * K * eh, kAct);
      for (Buffer<float>* b : {&la.sa, &la.sb, &la.ss}) b->reset(N * sh, kAct);
      max_hidden = std::max({max_hidden, N * K * eh, N * sh});
    }
  }
  a.xn.reset(N * d, kAct);
  a.rstd.reset(N, kAct);
  a.logits.reset(N * V, kAct);
  a.losses.reset(N, kAct);
  for (Buffer<float>* b : {&a.dres, &a.dxf, &a.datt, &a.dq, &a.dk, &a.dv, &a.dqr, &a.dkr, &a.dxa})
    b->reset(N * d, kAct);
  a.dlogits.reset(N * V, kAct);
  for (Buffer<float>* b : {&a.dha, &a.dhb, &a.dhs}) b->reset(max_hidden, kAct);
  a.dye.reset(N * K * d, kAct);
  a.dxe.reset(N * K * d, kAct);
  a.dgates.reset(N * K, kAct);
  a.dprobs.reset(N * E, kAct);
  a.drlogits.reset(N * E, kAct);
}

LossParts Transformer::forward(const int32_t* tokens, int B, int T) {
  ZT_CHECK(B >= 1 && T >= 1 && T <= cfg.seq_len, "microbatch ", B, " x ", T, " (seq_len ",
           cfg.seq_len, ")");
  Acts& a = *acts_;
  ensure_acts(a, cfg, B, T);
  const int N = a.N, d = cfg.model_dim, V = cfg.vocab, H = cfg.heads, dh = cfg.head_dim();
  for (int b = 0; b < B; ++b)
    for (int t = 0; t <= T; ++t) {
      int32_t id = tokens[(int64_t)b * (T + 1) + t];
      if (id < 0 || id >= V)
        fail("token id ", id, " at sample ", b, " position ", t, " is outside the vocabulary [0, ",
             V, ") (--vocab)");
      if (t < T) a.inputs[b * T + t] = id;
      if (t > 0) a.targets[b * T + t - 1] = id;
    }
  LossParts out;
  auto P = [&](int idx) { return (const float*)param(idx); };

  if (hooks.before_forward) hooks.before_forward(0);
  embedding_forward(a.x0.data(), a.inputs.data(), P(a.embed), N, d);
  const float* x = a.x0.data();
  for (int l = 0; l < cfg.layers; ++l) {
    if (hooks.before_forward) hooks.before_forward(l + 1);
    LayerActs& la = a.layers[l];
    const BlockIdx& bi = a.blk[l];
    // attention
    rmsnorm_forward(la.xa.data(), la.rstd_a.data(), x, P(bi.attn_norm), N, d, cfg.norm_eps);
    linear_forward(la.q.data(), la.xa.data(), P(bi.wq), N, d, d);
    linear_forward(la.k.data(), la.xa.data(), P(bi.wk), N, d, d);
    linear_forward(la.v.data(), la.xa.data(), P(bi.wv), N, d, d);
    rope_forward(la.q.data(), la.q.data(), B, T, H, dh, (float)cfg.rope_base);
    rope_forward(la.k.data(), la.k.data(), B, T, H, dh, (float)cfg.rope_base);
    attention_forward(la.att.data(), la.probs.data(), la.q.data(), la.k.data(), la.v.data(), B, T,
                      H, dh);
    copy(la.h.data(), x, (int64_t)N * d);
    linear_forward(la.h.data(), la.att.data(), P(bi.wo), N, d, d, /*accumulate=*/true);
    // feed-forward
    rmsnorm_forward(la.xf.data(), la.rstd_f.data(), la.h.data(), P(bi.ffn_norm), N, d,
                    cfg.norm_eps);
    copy(la.out.data(), la.h.data(), (int64_t)N * d);
    if (!cfg.is_moe(l)) {
      ffn_forward(la.out.data(), la.xf.data(), N, d, cfg.ffn_dim, P(bi.ffn.w1), P(bi.ffn.w2),
                  P(bi.ffn.w3), la.fa.data(), la.fb.data(), la.fs.data());
    } else {
      const int E = cfg.experts, K = cfg.top_k, eh = cfg.expert_ffn_dim;
      linear_forward(la.rlogits.data(), la.xf.data(), P(bi.router), N, d, E);
      router_forward(la.rprobs.data(), la.idx.data(), la.gates.data(), la.rlogits.data(), N, E, K,
                     cfg.router_norm);
      la.aux =
          moe_aux_loss_forward(la.rprobs.data(), la.idx.data(), N, E, K, (float)cfg.aux_loss_coef);
      out.aux += la.aux;
      moe_plan(la.plan, la.idx.data(), N, E, K, moe_capacity(cfg.capacity_factor, N, K, E));
      out.dropped += la.plan.dropped;
      const int rows = la.plan.rows();
      moe_dispatch_forward(la.xe.data(), la.xf.data(), la.plan, d);
      zero(la.ye.data(), (int64_t)rows * d);
      for (int e = 0; e < E; ++e) {
        int r0 = la.plan.offset[e], nr = la.plan.offset[e + 1] - r0;
        if (nr == 0) continue;
        const FfnIdx& f = bi.experts[e];
        ffn_forward(la.ye.data() + (int64_t)r0 * d, la.xe.data() + (int64_t)r0 * d, nr, d, eh,
                    P(f.w1), P(f.w2), P(f.w3), la.ea.data() + (int64_t)r0 * eh,
                    la.eb.data() + (int64_t)r0 * eh, la.es.data() + (int64_t)r0 * eh);
      }
      moe_combine_forward(la.out.data(), la.ye.data(), la.gates.data(), la.plan, d);
      if (bi.shared.w1 >= 0)
        ffn_forward(la.out.data(), la.xf.data(), N, d, cfg.shared_experts * eh, P(bi.shared.w1),
                    P(bi.shared.w2), P(bi.shared.w3), la.sa.data(), la.sb.data(), la.ss.data());
    }
    x = la.out.data();
  }
  if (hooks.before_forward) hooks.before_forward(cfg.layers + 1);
  rmsnorm_forward(a.xn.data(), a.rstd.data(), x, P(a.final_norm), N, d, cfg.norm_eps);
  if (cfg.untie_embeddings) {
    linear_forward(a.logits.data(), a.xn.data(), P(a.head), N, d, V);
  } else {  // logits = xn E^T, E [V, d]
    matmul(a.logits.data(), a.xn.data(), P(a.embed), N, V, d, false, true);
  }
  out.ce = cross_entropy_forward(a.losses.data(), a.logits.data(), a.targets.data(), N, V);
  return out;
}

void Transformer::backward(float loss_scale) {
  Acts& a = *acts_;
  ZT_CHECK(a.N > 0, "backward before forward");
  ZT_CHECK(with_grads_, "model was built without gradients");
  const int B = a.B, T = a.T, N = a.N, d = cfg.model_dim, V = cfg.vocab, H = cfg.heads;
  const int dh = cfg.head_dim();
  const int64_t Nd = (int64_t)N * d;
  auto P = [&](int idx) { return (const float*)param(idx); };
  auto G = [&](int idx) { return grad(idx); };

  // head and final norm
  if (hooks.before_backward) hooks.before_backward(cfg.layers + 1);
  zero(a.dlogits.data(), (int64_t)N * V);
  cross_entropy_backward(a.dlogits.data(), a.logits.data(), a.targets.data(), loss_scale / N, N, V);
  float* dxn = a.dxa.data();
  zero(dxn, Nd);
  if (cfg.untie_embeddings) {
    linear_backward(dxn, G(a.head), a.dlogits.data(), a.xn.data(), P(a.head), N, d, V);
  } else {  // dxn += dlogits E ; dE += dlogits^T xn
    matmul(dxn, a.dlogits.data(), P(a.embed), N, d, V, false, false, true);
    matmul(G(a.embed), a.dlogits.data(), a.xn.data(), V, d, N, true, false, true);
  }
  const float* x_last = cfg.layers > 0 ? a.layers.back().out.data() : a.x0.data();
  float* dres = a.dres.data();  // gradient of the residual stream, flows down the blocks
  zero(dres, Nd);
  rmsnorm_backward(dres, G(a.final_norm), dxn, x_last, P(a.final_norm), a.rstd.data(), N, d);
  if (hooks.grads_ready) hooks.grads_ready(cfg.layers + 1);

  for (int l = cfg.layers - 1; l >= 0; --l) {
    if (hooks.before_backward) hooks.before_backward(l + 1);
    LayerActs& la = a.layers[l];
    const BlockIdx& bi = a.blk[l];
    const float* x_in = l == 0 ? a.x0.data() : a.layers[l - 1].out.data();
    // feed-forward: x' = h + FFN(xf), xf = RMSNorm_f(h)
    float* dxf = a.dxf.data();
    zero(dxf, Nd);
    if (!cfg.is_moe(l)) {
      const FfnIdx& f = bi.ffn;
      ffn_backward(dxf, G(f.w1), G(f.w2), G(f.w3), dres, la.xf.data(), N, d, cfg.ffn_dim, P(f.w1),
                   P(f.w2), P(f.w3), la.fa.data(), la.fb.data(), la.fs.data(), a.dha.data(),
                   a.dhb.data(), a.dhs.data());
    } else {
      const int E = cfg.experts, K = cfg.top_k, eh = cfg.expert_ffn_dim;
      if (bi.shared.w1 >= 0) {
        const FfnIdx& f = bi.shared;
        ffn_backward(dxf, G(f.w1), G(f.w2), G(f.w3), dres, la.xf.data(), N, d,
                     cfg.shared_experts * eh, P(f.w1), P(f.w2), P(f.w3), la.sa.data(), la.sb.data(),
                     la.ss.data(), a.dha.data(), a.dhb.data(), a.dhs.data());
      }
      const int rows = la.plan.rows();
      zero(a.dye.data(), (int64_t)rows * d);
      zero(a.dgates.data(), (int64_t)N * K);
      moe_combine_backward(a.dye.data(), a.dgates.data(), dres, la.ye.data(), la.gates.data(),
                           la.plan, d);
      zero(a.dxe.data(), (int64_t)rows * d);
      for (int e = 0; e < E; ++e) {
        int r0 = la.plan.offset[e], nr = la.plan.offset[e + 1] - r0;
        if (nr == 0) continue;
        const FfnIdx& f = bi.experts[e];
        const int64_t rd = (int64_t)r0 * d, rh = (int64_t)r0 * eh;
        ffn_backward(a.dxe.data() + rd, G(f.w1), G(f.w2), G(f.w3), a.dye.data() + rd,
                     la.xe.data() + rd, nr, d, eh, P(f.w1), P(f.w2), P(f.w3), la.ea.data() + rh,
                     la.eb.data() + rh, la.es.data() + rh, a.dha.data(), a.dhb.data(),
                     a.dhs.data());
      }
      moe_dispatch_backward(dxf, a.dxe.data(), la.plan, d);
      zero(a.dprobs.data(), (int64_t)N * E);
      moe_aux_loss_backward(a.dprobs.data(), la.idx.data(), N, E, K, (float)cfg.aux_loss_coef,
                            loss_scale);
      zero(a.drlogits.data(), (int64_t)N * E);
      router_backward(a.drlogits.data(), a.dgates.data(), a.dprobs.data(), la.rprobs.data(),
                      la.idx.data(), N, E, K, cfg.router_norm);
      linear_backward(dxf, G(bi.router), a.drlogits.data(), la.xf.data(), P(bi.router), N, d, E);
    }
    rmsnorm_backward(dres, G(bi.ffn_norm), dxf, la.h.data(), P(bi.ffn_norm), la.rstd_f.data(), N,
                     d);
    // attention: h = x + (softmax(q k^T) v) Wo, q/k roped
    zero(a.datt.data(), Nd);
    linear_backward(a.datt.data(), G(bi.wo), dres, la.att.data(), P(bi.wo), N, d, d);
    zero(a.dq.data(), Nd);
    zero(a.dk.data(), Nd);
    zero(a.dv.data(), Nd);
    attention_backward(a.dq.data(), a.dk.data(), a.dv.data(), a.datt.data(), la.probs.data(),
                       la.q.data(), la.k.data(), la.v.data(), B, T, H, dh);
    zero(a.dqr.data(), Nd);
    zero(a.dkr.data(), Nd);
    rope_backward(a.dqr.data(), a.dq.data(), B, T, H, dh, (float)cfg.rope_base);
    rope_backward(a.dkr.data(), a.dk.data(), B, T, H, dh, (float)cfg.rope_base);
    zero(a.dxa.data(), Nd);
    linear_backward(a.dxa.data(), G(bi.wq), a.dqr.data(), la.xa.data(), P(bi.wq), N, d, d);
    linear_backward(a.dxa.data(), G(bi.wk), a.dkr.data(), la.xa.data(), P(bi.wk), N, d, d);
    linear_backward(a.dxa.data(), G(bi.wv), a.dv.data(), la.xa.data(), P(bi.wv), N, d, d);
    rmsnorm_backward(dres, G(bi.attn_norm), a.dxa.data(), x_in, P(bi.attn_norm), la.rstd_a.data(),
                     N, d);
    if (hooks.grads_ready) hooks.grads_ready(l + 1);
  }
  if (hooks.before_backward) hooks.before_backward(0);
  embedding_backward(G(a.embed), dres, a.inputs.data(), N, d);
  if (hooks.grads_ready) hooks.grads_ready(0);
}

}  // namespace zt
