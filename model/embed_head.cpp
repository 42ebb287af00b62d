// embed_head.cpp: the embedding and the head (final norm, logits, cross-entropy) of layers.h.
#include <cstring>

#include "model/layer_util.h"
#include "model/layers.h"
#include "model/weight_grads.h"
#include "runtime/error.h"

namespace zt {

namespace {

void check_microbatch(const ModelConfig& c, int B, int T) {
  ZT_CHECK(B >= 1 && T >= 1 && T <= c.seq_len, "microbatch ", B, " x ", T, " (seq_len ", c.seq_len,
           ")");
}

}  // namespace

void split_tokens(const ModelConfig& c, const int32_t* tokens, int B, int T,
                  std::vector<int32_t>& inputs, std::vector<int32_t>& targets) {
  check_microbatch(c, B, T);
  inputs.resize((size_t)B * T);
  targets.resize((size_t)B * T);
  const int V = c.vocab;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t <= T; ++t) {
      const int32_t id = tokens[(int64_t)b * (T + 1) + t];
      if (id < 0 || id >= V)
        fail("token id ", id, " at sample ", b, " position ", t, " is outside the vocabulary [0, ",
             V, ") (--vocab)");
      if (t < T) inputs[b * T + t] = id;
      if (t > 0) targets[b * T + t - 1] = id;
    }
}

void load_tokens(const Model& m, Acts& a, const int32_t* tokens, int B, int T) {
  check_microbatch(m.cfg, B, T);  // before the shape is set from it
  ZT_CHECK(m.slice.size == 1 || m.tp, "a tensor-parallel slice of the model needs its tp hook");
  a.shape(B, T, m.cfg.layers, m.slice.size, m.slice.rank, m.sequence_parallel);
  split_tokens(m.cfg, tokens, B, T, a.inputs, a.targets);
}

// Under tp each rank looks up its vocabulary rows; the lookups are summed.
void embed_forward(Model& m, Acts& a) {
  const int d = m.cfg.model_dim;
  float* x0 = room(a.resid[0], (int64_t)a.rows * d);
  float* all = a.sp ? room(a.full, (int64_t)a.N * d) : x0;
  embedding_forward(all, a.inputs.data(), m.param(m.embed), a.N, d, m.dims.vocab0, m.dims.vocab);
  complete_rows(m, a, TpPoint::embed_out, -1, all, x0, d).wait();
}

void embed_backward(Model& m, Acts& a) {
  const int d = m.cfg.model_dim;
  const float* dres = gather_rows(m, a, TpPoint::embed_dout, -1, a.dres.data(), a.full, d);
  embedding_backward(m.grad(m.embed), dres, a.inputs.data(), a.N, d, m.dims.vocab0, m.dims.vocab);
}

// Under tp each rank holds the logits of its vocabulary slice: the loss comes from the slices'
// row stats (one gather), never from whole rows (ops.h, cross_entropy_slice_*).
void head_forward(Model& m, Acts& a, LossParts& out) {
  const int N = a.N, d = m.cfg.model_dim, V = m.dims.vocab;
  const float* x = a.resid[m.cfg.layers].data();
  float* xn = room(a.xn, (int64_t)N * d);
  float* logits = room(a.logits, (int64_t)N * V);
  norm_forward_gathered(m, a, TpPoint::head_in, -1, xn, room(a.rstd, a.rows), x, m.final_norm);
  if (m.cfg.untie_embeddings)
    linear_forward(logits, xn, m.param(m.head), N, d, V);
  else  // logits = xn E^T, E [V, d]
    matmul(logits, xn, m.param(m.embed), N, V, d, false, true);
  if (!m.tp) {
    out.ce = cross_entropy_forward(room(a.losses, N), logits, a.targets.data(), N, V);
    return;
  }
  const int parts = m.slice.size;
  std::vector<float> stats((size_t)N * kCeStats), all((size_t)parts * N * kCeStats);
  cross_entropy_slice_stats(stats.data(), logits, a.targets.data(), N, V, m.dims.vocab0);
  m.tp->gather(stats.data(), (int64_t)stats.size(), all.data());
  out.ce = cross_entropy_combine(room(a.losses, N), room(a.lse, N), all.data(), parts, N,
                                 a.targets.data());
}

void head_backward(Model& m, Acts& a, GradScratch& s, float loss_scale, bool defer) {
  const int N = a.N, d = m.cfg.model_dim, V = m.dims.vocab;
  const int64_t Nd = (int64_t)N * d;
  float* dlogits = room(s.dlogits, (int64_t)N * V);
  std::memset(dlogits, 0, sizeof(float) * (size_t)N * V);
  if (!m.tp)
    cross_entropy_backward(dlogits, a.logits.data(), a.targets.data(), loss_scale / N, N, V);
  else
    cross_entropy_slice_backward(dlogits, a.logits.data(), a.targets.data(), a.lse.data(),
                                 loss_scale / N, N, V, m.dims.vocab0);
  float* dxn = room(s.dxa, Nd);
  float* dx_out = a.sp ? room(s.dx_rows, (int64_t)a.rows * d) : dxn;
  std::memset(dxn, 0, sizeof(float) * (size_t)Nd);
  // dxn (a partial sum over the vocabulary slices under tp) first; the weight gradient while it
  // is summed.
  if (m.cfg.untie_embeddings)
    linear_backward_input(dxn, dlogits, m.param(m.head), N, d, V);
  else  // dxn += dlogits E
    matmul(dxn, dlogits, m.param(m.embed), N, d, V, false, false, true);
  TpWait sum = complete_rows(m, a, TpPoint::head_dinput, -1, dxn, dx_out, d);
  if (m.cfg.untie_embeddings)
    weight_grad(a.head_wgrad, defer, m.grad(m.head), a.xn.data(), dlogits, N, d, V);
  else  // dE += dlogits^T xn
    weight_grad(a.head_wgrad, defer, m.grad(m.embed), dlogits, a.xn.data(), N, V, d,
                /*transient_x=*/true);
  sum.wait();
  float* dres = room(a.dres, (int64_t)a.rows * d);
  std::memset(dres, 0, sizeof(float) * (size_t)a.rows * d);
  norm_backward(m, a, -1, dres, m.final_norm, dx_out, a.resid[m.cfg.layers].data(), a.rstd.data(),
                s);
  if (defer)
    a.logits.reset(0, MemCategory::activations);  // the weight pass reads xn, dlogits' copy
}

void head_backward_weight(Model&, Acts& a) { run_weight_grads(a.head_wgrad); }

}  // namespace zt
