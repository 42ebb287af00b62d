// ffn.h: the SwiGLU FFN forward and backward the blocks share (dense, shared and routed experts).
// Internal to the layers.
#pragma once
#include <vector>

#include "model/layer_util.h"
#include "model/weight_grads.h"

namespace zt {

// out[n, d] += SwiGLU(x) with hidden `hid`; keeps a, b, s [n, hid] for backward.
inline void ffn_forward(float* out, const float* x, int n, int d, int hid, const float* w1,
                        const float* w2, const float* w3, float* a, float* b, float* s) {
  linear_forward(a, x, w1, n, d, hid);
  linear_forward(b, x, w3, n, d, hid);
  swiglu_forward(s, a, b, (int64_t)n * hid);
  linear_forward(out, s, w2, n, hid, d, /*accumulate=*/true);
}

// The weights and saved activations of one SwiGLU FFN's backward.
struct FfnSaved {
  const float *w1, *w2, *w3;
  float *dw1, *dw2, *dw3;
  const float *a, *b, *s;  // [n, hid] from forward
};

inline FfnSaved saved(Model& m, const FfnParams& f, const float* a, const float* b,
                      const float* s) {
  return {m.param(f.w1),
          m.param(f.w2),
          m.param(f.w3),
          m.grad(f.w1),
          m.grad(f.w2),
          m.grad(f.w3),
          a,
          b,
          s};
}

// dx += d/dx of the FFN given dout; the weight gradients through weight_grad, w1's and w3's
// unless `w13_later` (the caller runs ffn_backward_w13 while a sum of dx is in flight). Scratch
// [n, hid] comes from s.dha / dhb / dhs.
inline void ffn_backward(float* dx, const float* dout, const float* x, int n, int d, int hid,
                         const FfnSaved& f, GradScratch& s, std::vector<WeightGradJob>& jobs,
                         bool defer, bool w13_later = false) {
  const int64_t nh = (int64_t)n * hid;
  float* da = room(s.dha, nh);
  float* db = room(s.dhb, nh);
  float* ds = room(s.dhs, nh);
  zero(ds, nh);
  linear_backward_input(ds, dout, f.w2, n, hid, d);
  weight_grad(jobs, defer, f.dw2, f.s, dout, n, hid, d);
  zero(da, nh);
  zero(db, nh);
  swiglu_backward(da, db, ds, f.a, f.b, nh);
  linear_backward_input(dx, da, f.w1, n, d, hid);
  if (!w13_later) weight_grad(jobs, defer, f.dw1, x, da, n, d, hid);
  linear_backward_input(dx, db, f.w3, n, d, hid);
  if (!w13_later) weight_grad(jobs, defer, f.dw3, x, db, n, d, hid);
}

// The w1 / w3 weight gradients of the ffn_backward just run with w13_later.
inline void ffn_backward_w13(const float* x, int n, int d, int hid, const FfnSaved& f,
                             GradScratch& s, std::vector<WeightGradJob>& jobs, bool defer) {
  weight_grad(jobs, defer, f.dw1, x, s.dha.data(), n, d, hid);
  weight_grad(jobs, defer, f.dw3, x, s.dhb.data(), n, d, hid);
}

// The MoE FFN of block l (moe_layer.cpp). Forward: y[N, d] += the routed experts' gated outputs and
// the shared expert's over xf [N, d]; adds the aux loss, the dropped assignments and the routed
// load to `out`. Backward: dxf [N, d] (zeroed by the caller) += the input gradient given dy [N,
// d], partial over tp until its sum, which lands in dx_out (the rank's rows) with the router's
// part added.
struct LossParts;
void moe_forward(Model& m, int l, Acts& a, const float* xf, float* y, LossParts& out);
void moe_backward(Model& m, int l, Acts& a, GradScratch& s, float loss_scale, bool defer,
                  const float* dy, float* dxf, float* dx_out);

}  // namespace zt
