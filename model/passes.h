// passes.h: the whole model over one microbatch, layer by layer (model/layers.h), telling the
// owner of the parameters (the ZeRO engine) when each unit is used and when its gradients are
// complete. A pipeline stage runs its own layers instead; evaluation and generation call these
// with no hooks.
#pragma once
#include <functional>

#include "model/layers.h"

namespace zt {

enum class Pass : uint8_t { forward, backward };

// The units a layer reads are in use from use(u) to done(u): their parameters must be valid at
// unit_params[u] (and, in backward, their gradient buffers at unit_grads[u]) in between.
// grads_ready(u): the unit's gradients of this microbatch are complete. The tied embedding stays
// in use from the embedding layer to the head in forward, and through the whole backward (the
// head reads it and writes its gradient). use() of a unit already in use is allowed.
struct UnitHooks {
  std::function<void(int unit, Pass pass)> use, done;
  std::function<void(int unit)> grads_ready;
};

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

// tokens [B, T+1] (layers.h, load_tokens). With backward_next (its backward runs right after),
// the head's units stay in use into model_backward instead of being given back and taken again.
LossParts model_forward(Model& m, Acts& a, const int32_t* tokens, int B, int T,
                        const UnitHooks* hooks = nullptr, bool backward_next = false);
// Gradients of loss_scale * (ce + aux) of a's forward, accumulated into the model's unit_grads.
void model_backward(Model& m, Acts& a, GradScratch& s, float loss_scale,
                    const UnitHooks* hooks = nullptr);

}  // namespace zt
