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

// The layers in order with the unit hooks between them, for any implementation of the layers (the
// host's below, the device passes of model/device/): embed(), block(l) for every block, head().
// Forward with backward_next keeps the head's units in use, as model_forward.
struct LayerCalls {
  std::function<void()> embed;
  std::function<void(int layer)> block;
  std::function<void()> head;
};
void forward_in_order(const Model& m, const UnitHooks* hooks, bool backward_next,
                      const LayerCalls& layers);
void backward_in_order(const Model& m, const UnitHooks* hooks, const LayerCalls& layers);

// tokens [B, T+1] (layers.h, load_tokens). With backward_next (its backward runs right after),
// the head's units stay in use into model_backward instead of being given back and taken again.
LossParts model_forward(Model& m, Acts& a, const int32_t* tokens, int B, int T,
                        const UnitHooks* hooks = nullptr, bool backward_next = false);
// Gradients of loss_scale * (ce + aux) of a's forward, accumulated into the model's unit_grads.
void model_backward(Model& m, Acts& a, GradScratch& s, float loss_scale,
                    const UnitHooks* hooks = nullptr);

}  // namespace zt
