// passes.cpp: forward and backward through every layer, with the unit hooks between layers.
#include "model/passes.h"

namespace zt {

LossParts model_forward(Model& m, Acts& a, const int32_t* tokens, int B, int T,
                        const UnitHooks* hooks, bool backward_next) {
  const HookCalls c{hooks};
  const bool tied = !m.cfg.untie_embeddings;
  load_tokens(m, a, tokens, B, T);
  LossParts out;
  c.use(m.embed_unit, Pass::forward);
  embed_forward(m, a);
  if (!tied) c.done(m.embed_unit, Pass::forward);
  for (int l = 0; l < m.cfg.layers; ++l) {
    const BlockParams& bp = m.blocks[l];
    c.use(bp.unit, Pass::forward);
    c.use(bp.expert_unit, Pass::forward);
    block_forward(m, l, a, out);
    c.done(bp.unit, Pass::forward);
    c.done(bp.expert_unit, Pass::forward);
  }
  c.use(m.head_unit, Pass::forward);
  head_forward(m, a, out);
  if (!backward_next) {
    c.done(m.head_unit, Pass::forward);
    if (tied) c.done(m.embed_unit, Pass::forward);
  }
  return out;
}

void model_backward(Model& m, Acts& a, GradScratch& s, float loss_scale, const UnitHooks* hooks) {
  const HookCalls c{hooks};
  const bool tied = !m.cfg.untie_embeddings;
  c.use(m.head_unit, Pass::backward);
  if (tied) c.use(m.embed_unit, Pass::backward);
  head_backward(m, a, s, loss_scale);
  c.done(m.head_unit, Pass::backward);
  c.ready(m.head_unit);
  for (int l = m.cfg.layers - 1; l >= 0; --l) {
    const BlockParams& bp = m.blocks[l];
    c.use(bp.expert_unit, Pass::backward);
    c.use(bp.unit, Pass::backward);
    block_backward(m, l, a, s, loss_scale);
    c.done(bp.expert_unit, Pass::backward);
    c.done(bp.unit, Pass::backward);
    c.ready(bp.expert_unit);
    c.ready(bp.unit);
  }
  if (!tied) c.use(m.embed_unit, Pass::backward);
  embed_backward(m, a);
  c.done(m.embed_unit, Pass::backward);
  c.ready(m.embed_unit);
}

}  // namespace zt
