// qat_linear.h: the block linears as QAT sees them (model/qat.h), internal to the layers. Without
// QAT (or before its start) each is the plain fp32 op.
#pragma once
#include "model/layer_util.h"
#include "model/ops/quant_ops.h"
#include "model/weight_grads.h"

namespace zt {

inline bool is_quantized(const Model& m, int w) {
  return m.qat.active && m.table.params[w].qscale >= 0;
}

// The weight a block linear multiplies by: q(w) while QAT is active, else w itself.
const float* qat_weight(Model& m, int w);

// The linear's input x [n, d], fake-quantized to int8 per token in place while QAT is active.
inline void qat_input(Model& m, float* x, int64_t n, int d) {
  if (m.qat.active) fake_quant_rows(x, n, d);
}

// The input of a row-parallel linear (att for wo, a SwiGLU output for w2), in place: under tp a
// rank holds some columns of every row, so each row's absmax is the largest over the tp ranks.
void qat_input_split(Model& m, float* x, int64_t n, int d);

// out[n, o] (=, or +=) x W for block linear w: in integer mode int8 x int8 on its levels.
void qat_linear_forward(Model& m, int w, float* out, const float* x, int n, int in, int o,
                        bool accumulate = false);

// weight_grad (weight_grads.h) for block linear w: its gradient, through LSQ while QAT is active.
void qat_weight_grad(Model& m, std::vector<WeightGradJob>& jobs, bool defer, int w, const float* x,
                     const float* dout, int n, int in, int o);

// Drops the fake-quantized weights of block l (unless QatState::keep): a block's pass is done.
void qat_release(Model& m, int l);

}  // namespace zt
