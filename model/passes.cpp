// passes.cpp: forward and backward through every layer, with the unit hooks between layers.
#include "model/passes.h"

namespace zt {
namespace {

// The hooks as the passes call them: absent hooks and units (-1) are skipped.
struct HookCalls {
  const UnitHooks* h;
  void use(int u, Pass p) const {
    if (h && h->use && u >= 0) h->use(u, p);
  }
  void done(int u, Pass p) const {
    if (h && h->done && u >= 0) h->done(u, p);
  }
  void ready(int u) const {
    if (h && h->grads_ready && u >= 0) h->grads_ready(u);
  }
};

}  // namespace

void forward_in_order(const Model& m, const UnitHooks* hooks, bool backward_next,
                      const LayerCalls& f) {
  const HookCalls c{hooks};
  const bool tied = !m.cfg.untie_embeddings;
  c.use(m.embed_unit, Pass::forward);
  f.embed();
  if (!tied) c.done(m.embed_unit, Pass::forward);
  for (int l = 0; l < m.cfg.layers; ++l) {
    const BlockParams& bp = m.blocks[l];
    c.use(bp.unit, Pass::forward);
    c.use(bp.expert_unit, Pass::forward);
    f.block(l);
    c.done(bp.unit, Pass::forward);
    c.done(bp.expert_unit, Pass::forward);
  }
  c.use(m.head_unit, Pass::forward);
  f.head();
  if (!backward_next) {
    c.done(m.head_unit, Pass::forward);
    if (tied) c.done(m.embed_unit, Pass::forward);
  }
}

void backward_in_order(const Model& m, const UnitHooks* hooks, const LayerCalls& b) {
  const HookCalls c{hooks};
  const bool tied = !m.cfg.untie_embeddings;
  c.use(m.head_unit, Pass::backward);
  if (tied) c.use(m.embed_unit, Pass::backward);
  b.head();
  c.done(m.head_unit, Pass::backward);
  c.ready(m.head_unit);
  for (int l = m.cfg.layers - 1; l >= 0; --l) {
    const BlockParams& bp = m.blocks[l];
    c.use(bp.expert_unit, Pass::backward);
    c.use(bp.unit, Pass::backward);
    b.block(l);
    c.done(bp.expert_unit, Pass::backward);
    c.done(bp.unit, Pass::backward);
    c.ready(bp.expert_unit);
    c.ready(bp.unit);
  }
  if (!tied) c.use(m.embed_unit, Pass::backward);
  b.embed();
  c.done(m.embed_unit, Pass::backward);
  c.ready(m.embed_unit);
}

LossParts model_forward(Model& m, Acts& a, const int32_t* tokens, int B, int T,
                        const UnitHooks* hooks, bool backward_next) {
  load_tokens(m, a, tokens, B, T);
  LossParts out;
  forward_in_order(m, hooks, backward_next,
                   {[&] { embed_forward(m, a); }, [&](int l) { block_forward(m, l, a, out); },
                    [&] { head_forward(m, a, out); }});
  return out;
}

void model_backward(Model& m, Acts& a, GradScratch& s, float loss_scale, const UnitHooks* hooks) {
  backward_in_order(
      m, hooks,
      {[&] { embed_backward(m, a); }, [&](int l) { block_backward(m, l, a, s, loss_scale); },
       [&] { head_backward(m, a, s, loss_scale); }});
}

}  // namespace zt
