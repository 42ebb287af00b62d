// model_run.h (tests): a model with the activations of its last microbatch, for tests that run
// whole forward / backward passes on one rank.
#pragma once
#include "model/passes.h"

namespace zt::test {

struct ModelRun {
  explicit ModelRun(Model& m) : model(m) {}
  Model& model;
  Acts acts;
  GradScratch scratch;
  LossParts forward(const int32_t* tokens, int B, int T) {
    return model_forward(model, acts, tokens, B, T);
  }
  void backward(float loss_scale) { model_backward(model, acts, scratch, loss_scale); }
  const float* logits() const { return acts.logits.data(); }
  const float* hidden(int i) const { return acts.resid[i].data(); }  // 0 = embedding output
};

}  // namespace zt::test
