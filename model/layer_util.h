// layer_util.h: what the layers share (internal to model/): small vector helpers, and the
// tensor-parallel steps of a layer, which do nothing on one rank.
//
// Rows: an activation of the microbatch has N = B*T rows. Under sequence parallelism (Acts::sp)
// the residual stream, the norms and their gradients hold only this rank's a.rows rows, starting
// at row a.row0; the column-parallel layers work on all N rows, gathered first, and the
// row-parallel outputs are reduce-scattered back to the rank's rows.
#pragma once
#include <cstring>

#include "model/acts.h"
#include "model/model.h"
#include "model/tp_hook.h"

namespace zt {

// (n may be 0 with null pointers: an expert-parallel rank that receives no rows)
inline void zero(float* p, int64_t n) {
  if (n > 0) std::memset(p, 0, sizeof(float) * (size_t)n);
}
inline void copy(float* dst, const float* src, int64_t n) {
  if (n > 0) std::memcpy(dst, src, sizeof(float) * (size_t)n);
}
inline void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

// full [N, d] is this rank's partial sum of an activation (a row-parallel product): its sum over
// the tp ranks goes to out, the rank's rows (out == full without sequence parallelism: in place).
inline TpWait complete_rows(Model& m, const Acts& a, TpPoint where, int layer, float* full,
                            float* out, int d) {
  if (!m.tp) return {};
  if (!a.sp) return m.tp->sum_partial(where, layer, full, (int64_t)a.N * d);
  return m.tp->sum_rows(where, layer, full, out, (int64_t)a.rows * d);
}

// Sequence parallelism: the rank's rows `mine` [rows, d] of an activation into full [N, d];
// returns full, or mine itself when the rank holds every row.
inline const float* gather_rows(Model& m, const Acts& a, TpPoint where, int layer,
                                const float* mine, Buffer<float>& full, int d) {
  if (!a.sp) return mine;
  float* f = room(full, (int64_t)a.N * d);
  m.tp->gather_rows(where, layer, mine, (int64_t)a.rows * d, f).wait();
  return f;
}

// RMSNorm of the rank's rows x [rows, d] into out [N, d] at the rank's rows, then (sequence
// parallel) gathered so that out holds all N rows: the input of the column-parallel layers.
inline void norm_forward_gathered(Model& m, const Acts& a, TpPoint where, int layer, float* out,
                                  float* rstd, const float* x, int gain) {
  const int d = m.cfg.model_dim;
  float* mine = out + (int64_t)a.row0 * d;
  rmsnorm_forward(mine, rstd, x, m.param(gain), a.rows, d, m.cfg.norm_eps);
  if (a.sp) m.tp->gather_rows(where, layer, mine, (int64_t)a.rows * d, out).wait();
}

// RMSNorm backward over the rank's rows; the gain's gradient, partial over the tokens under
// sequence parallelism, is summed over the tp ranks before it is added.
inline void norm_backward(Model& m, const Acts& a, int layer, float* dx, int gain,
                          const float* dout, const float* x, const float* rstd, GradScratch& s) {
  const int d = m.cfg.model_dim;
  if (!a.sp) {
    rmsnorm_backward(dx, m.grad(gain), dout, x, m.param(gain), rstd, a.rows, d);
    return;
  }
  float* dg = room(s.dgain, d);
  zero(dg, d);
  rmsnorm_backward(dx, dg, dout, x, m.param(gain), rstd, a.rows, d);
  m.tp->sum_partial(TpPoint::norm_grad, layer, dg, d).wait();
  add(m.grad(gain), dg, d);
}

}  // namespace zt
