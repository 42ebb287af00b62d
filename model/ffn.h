// ffn.h: the SwiGLU FFN forward and backward the blocks share (dense, shared and routed experts).
// Internal to the layers.
#pragma once
#include <vector>

#include "model/layer_util.h"
#include "model/qat_linear.h"
#include "model/weight_grads.h"

namespace zt {

// out[n, d] += SwiGLU(x) with hidden `hid` (= when not accumulating); keeps a, b, s [n, hid] for
// backward. With QAT the caller has quantized x (qat_linear.h); s is quantized here, in place.
inline void ffn_forward(Model& m, const FfnParams& f, float* out, const float* x, int n, int d,
                        int hid, float* a, float* b, float* s, bool accumulate = true) {
  qat_linear_forward(m, f.w1, a, x, n, d, hid);
  qat_linear_forward(m, f.w3, b, x, n, d, hid);
  swiglu_forward(s, a, b, (int64_t)n * hid);
  qat_input_split(m, s, n, hid);
  qat_linear_forward(m, f.w2, out, s, n, hid, d, accumulate);
}

// The weights and saved activations of one SwiGLU FFN's backward.
struct FfnSaved {
  Model* m;
  FfnParams f;
  const float *a, *b, *s;  // [n, hid] from forward
};

inline FfnSaved saved(Model& m, const FfnParams& f, const float* a, const float* b,
                      const float* s) {
  return {&m, f, a, b, s};
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
  Model& m = *f.m;
  zero(ds, nh);
  linear_backward_input(ds, dout, qat_weight(m, f.f.w2), n, hid, d);
  qat_weight_grad(m, jobs, defer, f.f.w2, f.s, dout, n, hid, d);
  zero(da, nh);
  zero(db, nh);
  swiglu_backward(da, db, ds, f.a, f.b, nh);
  linear_backward_input(dx, da, qat_weight(m, f.f.w1), n, d, hid);
  if (!w13_later) qat_weight_grad(m, jobs, defer, f.f.w1, x, da, n, d, hid);
  linear_backward_input(dx, db, qat_weight(m, f.f.w3), n, d, hid);
  if (!w13_later) qat_weight_grad(m, jobs, defer, f.f.w3, x, db, n, d, hid);
}

// The w1 / w3 weight gradients of the ffn_backward just run with w13_later.
inline void ffn_backward_w13(const float* x, int n, int d, int hid, const FfnSaved& f,
                             GradScratch& s, std::vector<WeightGradJob>& jobs, bool defer) {
  qat_weight_grad(*f.m, jobs, defer, f.f.w1, x, s.dha.data(), n, d, hid);
  qat_weight_grad(*f.m, jobs, defer, f.f.w3, x, s.dhb.data(), n, d, hid);
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
