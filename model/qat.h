// qat.h: quantization-aware training in the model (SPEC section 7; the ops are in
// model/ops/quant_ops.h).
//
// With cfg.qat on, every block linear's weight (attention q, k, v, o; dense, shared and expert
// w1, w2, w3) has step sizes `<weight>.qscale` in the table. While Model::qat.active:
//   forward   the linear's input is fake-quantized to int8 per token (in place: the buffer kept
//             for backward holds the quantized input), its weight is q(w), computed when a block
//             first uses it and dropped when the block's pass ends (so ZeRO-3 never holds more
//             than a block's), or kept (QatState::keep) for eval and generation
//   backward  input gradients through q(w); the weight gradient x_q^T dout goes through LSQ
//             (quant_ops.h) into the weight's and the step sizes' gradients, per product, so
//             accumulation over microbatches, deferral (zero-bubble) and ZeRO see ordinary
//             gradients
// In integer mode (QatState::integer, a quantized export) the linears run int8_linear_forward
// on the stored levels instead.
//
// Training switches QAT on from the step after --qat-start-step completed steps; the step sizes
// are initialised from the weights then (init_step_sizes_logical), unless a checkpoint trained
// past the start already holds them.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "model/ops/quant_ops.h"

namespace zt {

// Is fake quant on for the step after `completed` steps?
inline bool qat_active_at(const QatConfig& q, int64_t completed) {
  return q.on() && completed >= q.start_step;
}
// Were a checkpoint's step sizes trained (it was written past its QAT start)?
inline bool qat_trained_at(const QatConfig& q, int64_t step) {
  return q.on() && step > q.start_step;
}

// Step sizes of unit u's quantized weights from the weights themselves (QAT's start), in a unit
// buffer laid out as `t` lays out unit u: the MSE-best of init_step_sizes per group, or (!mse)
// absmax / qp, what a new model starts with until its QAT start initialises them.
// With `tp` (the model's hook; collective over its ranks) a row-parallel slice's per-channel step
// sizes come from the whole weight.
class TensorParallelHook;
void init_unit_step_sizes(const ParamTable& t, int u, float* unit_buf,
                          TensorParallelHook* tp = nullptr, bool mse = true);

// The group size G of quantized weight p (input rows per step size) in this rank's slice.
inline int qat_group(const ParamTable& t, const ParamSpec& p) {
  return std::min((int)p.shape[0], t.qat.group_rows((int)p.full_shape[0]));
}

}  // namespace zt
