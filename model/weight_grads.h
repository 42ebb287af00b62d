// weight_grads.h: the weight half of backward, run now or kept for later (layers.h, "Backward").
// Internal to the layers.
#pragma once
#include <cstring>
#include <vector>

#include "model/acts.h"
#include "model/ops/quant_ops.h"
#include "model/tp_hook.h"

namespace zt {

// dw += x^T dout, or (quant.w) its LSQ image in dw and quant.ds.
inline void run_weight_grad(float* dw, const float* x, const float* dout, int n, int in, int out,
                            const WeightQuant& q) {
  if (!q.w) {
    linear_backward_weight(dw, dout, x, n, in, out);
    return;
  }
  // dL/dq(w) of this product alone, into the model's scratch (kept for the next product, freed
  // after the step: the largest weight's size).
  float* g = room(*q.scratch, (int64_t)in * out, MemCategory::buffers);
  matmul(g, x, dout, in, out, n, /*trans_a=*/true, /*trans_b=*/false);  // =, not +=
  if (!q.sum) {
    fake_quant_weight_backward(dw, q.ds, g, q.w, q.s, in, out, q.group, q.qp, q.shared);
    return;
  }
  std::vector<float> ds((size_t)out, 0.0f);  // per channel: [out]
  fake_quant_weight_backward(dw, ds.data(), g, q.w, q.s, in, out, q.group, q.qp, q.shared);
  q.sum->sum_partial(TpPoint::qat_scale_grad, q.layer, ds.data(), out).wait();
  for (int o = 0; o < out; ++o) q.ds[o] += ds[o];
}

// dw[in, out] += x^T dout, now, or (defer) kept in `jobs`. A kept job copies the operand that the
// rest of backward overwrites: dout, or x when transient_x (the tied head's dlogits).
inline void weight_grad(std::vector<WeightGradJob>& jobs, bool defer, float* dw, const float* x,
                        const float* dout, int n, int in, int out, bool transient_x = false,
                        const WeightQuant& quant = {}) {
  if (!dw) return;
  if (!defer) {
    run_weight_grad(dw, x, dout, n, in, out, quant);
    return;
  }
  WeightGradJob& j = jobs.emplace_back(WeightGradJob{dw, x, dout, n, in, out, {}, quant});
  const float* src = transient_x ? x : dout;
  const int64_t count = (int64_t)n * (transient_x ? in : out);
  j.kept.reset((size_t)count, MemCategory::activations);
  std::memcpy(j.kept.data(), src, sizeof(float) * (size_t)count);
  (transient_x ? j.x : j.dout) = j.kept.data();
}

inline void run_weight_grads(std::vector<WeightGradJob>& jobs) {
  for (WeightGradJob& j : jobs) run_weight_grad(j.dw, j.x, j.dout, j.n, j.in, j.out, j.quant);
  jobs.clear();
}

}  // namespace zt
