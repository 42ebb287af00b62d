// embed_head.cpp: the embedding and the head (final norm, logits, cross-entropy) of layers.h.
#include <cstring>

#include "model/layers.h"
#include "model/weight_grads.h"
#include "runtime/error.h"

namespace zt {

void load_tokens(const Model& m, Acts& a, const int32_t* tokens, int B, int T) {
  ZT_CHECK(B >= 1 && T >= 1 && T <= m.cfg.seq_len, "microbatch ", B, " x ", T, " (seq_len ",
           m.cfg.seq_len, ")");
  a.shape(B, T, m.cfg.layers);
  const int V = m.cfg.vocab;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t <= T; ++t) {
      const int32_t id = tokens[(int64_t)b * (T + 1) + t];
      if (id < 0 || id >= V)
        fail("token id ", id, " at sample ", b, " position ", t, " is outside the vocabulary [0, ",
             V, ") (--vocab)");
      if (t < T) a.inputs[b * T + t] = id;
      if (t > 0) a.targets[b * T + t - 1] = id;
    }
}

void embed_forward(Model& m, Acts& a) {
  const int d = m.cfg.model_dim;
  embedding_forward(room(a.resid[0], (int64_t)a.N * d), a.inputs.data(), m.param(m.embed), a.N, d);
}

void embed_backward(Model& m, Acts& a) {
  embedding_backward(m.grad(m.embed), a.dres.data(), a.inputs.data(), a.N, m.cfg.model_dim);
}

void head_forward(Model& m, Acts& a, LossParts& out) {
  const int N = a.N, d = m.cfg.model_dim, V = m.cfg.vocab;
  const float* x = a.resid[m.cfg.layers].data();
  float* xn = room(a.xn, (int64_t)N * d);
  float* logits = room(a.logits, (int64_t)N * V);
  rmsnorm_forward(xn, room(a.rstd, N), x, m.param(m.final_norm), N, d, m.cfg.norm_eps);
  if (m.cfg.untie_embeddings)
    linear_forward(logits, xn, m.param(m.head), N, d, V);
  else  // logits = xn E^T, E [V, d]
    matmul(logits, xn, m.param(m.embed), N, V, d, false, true);
  out.ce = cross_entropy_forward(room(a.losses, N), logits, a.targets.data(), N, V);
}

void head_backward(Model& m, Acts& a, GradScratch& s, float loss_scale, bool defer) {
  const int N = a.N, d = m.cfg.model_dim, V = m.cfg.vocab;
  const int64_t Nd = (int64_t)N * d;
  float* dlogits = room(s.dlogits, (int64_t)N * V);
  std::memset(dlogits, 0, sizeof(float) * (size_t)N * V);
  cross_entropy_backward(dlogits, a.logits.data(), a.targets.data(), loss_scale / N, N, V);
  float* dxn = room(s.dxa, Nd);
  std::memset(dxn, 0, sizeof(float) * (size_t)Nd);
  if (m.cfg.untie_embeddings) {
    linear_backward_input(dxn, dlogits, m.param(m.head), N, d, V);
    weight_grad(a.head_wgrad, defer, m.grad(m.head), a.xn.data(), dlogits, N, d, V);
  } else {  // dxn += dlogits E ; dE += dlogits^T xn
    matmul(dxn, dlogits, m.param(m.embed), N, d, V, false, false, true);
    weight_grad(a.head_wgrad, defer, m.grad(m.embed), dlogits, a.xn.data(), N, V, d,
                /*transient_x=*/true);
  }
  float* dres = room(a.dres, Nd);
  std::memset(dres, 0, sizeof(float) * (size_t)Nd);
  rmsnorm_backward(dres, m.grad(m.final_norm), dxn, a.resid[m.cfg.layers].data(),
                   m.param(m.final_norm), a.rstd.data(), N, d);
}

void head_backward_weight(Model&, Acts& a) { run_weight_grads(a.head_wgrad); }

}  // namespace zt
