// acts.cpp: the shape of an Acts.
#include "model/acts.h"

namespace zt {

void Acts::shape(int b, int t, int layers) {
  if (b == B && t == T && (int)blocks.size() == layers) return;
  B = b, T = t, N = b * t;
  inputs.assign(N, 0);
  targets.assign(N, 0);
  resid.clear();
  resid.resize(layers + 1);
  blocks.clear();
  blocks.resize(layers);
  for (Buffer<float>* x : {&xn, &rstd, &logits, &losses, &lse, &dres})
    x->reset(0, MemCategory::activations);
  head_wgrad.clear();
}

}  // namespace zt
