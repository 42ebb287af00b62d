// transformer.h: the MoE transformer of SPEC section 1, forward and backward over one microbatch.
//
// The model owns nothing about parallelism. Its parameters live in one flat buffer per unit
// (unit 0 = embedding, 1..layers = blocks, layers+1 = final norm and head; see params.h); the
// pointers unit_params / unit_grads may be re-aimed by a caller (ZeRO gathers a unit into its own
// buffer), and hooks tell the caller when a unit is about to be used and when its gradients are
// final. Gradients accumulate (+=) across microbatches until the caller zeroes them.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/config.h"
#include "model/ops/ops.h"
#include "model/params.h"
#include "runtime/alloc.h"

namespace zt {

struct LossParts {
  double ce = 0;        // mean next-token cross-entropy over the microbatch
  double aux = 0;       // sum over MoE blocks of the balance loss
  int64_t dropped = 0;  // expert assignments dropped by capacity, all MoE blocks
  double loss() const { return ce + aux; }
};

struct UnitHooks {
  std::function<void(int unit)> before_forward;   // parameters of `unit` must be valid after it
  std::function<void(int unit)> before_backward;  // same, for the backward pass
  std::function<void(int unit)> grads_ready;  // gradients of `unit` complete for this microbatch
};

struct Transformer {
  ModelConfig cfg;
  ParamTable table;
  std::vector<float*> unit_params;  // [units] views; by default into own_params
  std::vector<float*> unit_grads;   // [units]
  UnitHooks hooks;

  // Allocates parameters and gradients (tracked) and initialises them from seed per SPEC.
  Transformer(const ModelConfig& cfg, uint64_t seed, bool with_grads = true);
  ~Transformer();
  Transformer(const Transformer&) = delete;
  Transformer& operator=(const Transformer&) = delete;

  float* param(const std::string& name);
  float* grad(const std::string& name);
  float* param(int idx) { return unit_params[table.params[idx].unit] + table.params[idx].offset; }
  float* grad(int idx) { return unit_grads[table.params[idx].unit] + table.params[idx].offset; }
  void zero_grads();
  // Frees the parameter and gradient buffers the model allocated itself; the caller has taken
  // over unit_params / unit_grads (the ZeRO engine).
  void release_own_storage();

  // tokens [B, T+1]: inputs are tokens[b, 0..T-1], targets tokens[b, 1..T]. T <= cfg.seq_len.
  // Keeps what backward needs. A token id outside [0, vocab) throws naming it.
  LossParts forward(const int32_t* tokens, int B, int T);
  // Gradients of loss_scale * (ce + aux) of the last forward, accumulated into unit_grads.
  void backward(float loss_scale);

  const float* logits() const;       // [B*T, vocab] of the last forward
  const float* hidden(int i) const;  // residual stream: 0 = after embedding, l+1 = after block l

  struct Acts;  // activations of the last forward (transformer.cpp)

 private:
  std::vector<Buffer<float>> own_params_, own_grads_;
  bool with_grads_;
  Acts* acts_ = nullptr;
};

}  // namespace zt
