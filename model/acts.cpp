// acts.cpp: the shape of an Acts.
#include "model/acts.h"

namespace zt {

void Acts::shape(int b, int t, int layers, int tp_ranks, int tp_rank, bool seq_parallel) {
  const bool split = seq_parallel && (b * t) % tp_ranks == 0;  // else every rank has every row
  rows = split ? b * t / tp_ranks : b * t;
  row0 = split ? rows * tp_rank : 0;
  if (b == B && t == T && (int)blocks.size() == layers && split == sp) return;
  B = b, T = t, N = b * t, sp = split;
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
