// model.h: the MoE transformer of SPEC section 1: its parameters, and the layers a schedule runs.
//
// A Model holds the parameter table and, per unit, a pointer to the unit's parameters and to its
// gradients. By default those point into buffers the model allocated and initialised itself; the
// ZeRO engine re-aims them (it gathers a unit into its own buffer) and the model never knows.
// The model owns no activations: they live in an Acts per microbatch (model/acts.h), owned by
// whoever runs the layers, so a pipeline can keep several microbatches alive. The layers are in
// model/layers.h, the whole-model passes in model/passes.h. Nothing here knows about
// communication: a tensor-parallel split completes its partial results through model/tp_hook.h.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/ops/quant_ops.h"
#include "model/params.h"
#include "runtime/alloc.h"

namespace zt {

class TensorParallelHook;
class ExpertParallelHook;

// Parameter indices of one block, looked up once (the layers address parameters by index).
struct FfnParams {  // one SwiGLU FFN
  int w1 = -1, w2 = -1, w3 = -1;
  bool present() const { return w1 >= 0; }
};
struct BlockParams {
  int attn_norm = -1, wq = -1, wk = -1, wv = -1, wo = -1, ffn_norm = -1;
  FfnParams ffn;                    // dense blocks
  int router = -1;                  // MoE blocks
  std::vector<FfnParams> experts;   // [experts this rank holds]: experts first.. of the block
  FfnParams shared;                 // absent without a shared expert
  int unit = -1, expert_unit = -1;  // the block's units (expert_unit: MoE blocks only)
};

// This rank's share of the sizes tensor parallelism splits (the whole model on one rank).
struct LocalDims {
  int heads, qkv;               // attention heads, and their width heads * head_dim
  int ffn, expert_ffn, shared;  // SwiGLU hidden sizes: dense, each routed expert, shared expert
  int vocab, vocab0;            // the vocabulary rows [vocab0, vocab0 + vocab) of the embedding
  int experts, expert0;         // the routed experts [expert0, expert0 + experts) of each block
};

// Quantization-aware training (model/qat.h): how the block linears see their weights now.
struct QatState {
  bool active = false;   // fake quant in the forward pass (past --qat-start-step; eval of QAT)
  bool keep = false;     // keep fake-quantized weights between passes (weights do not change)
  bool integer = false;  // int8 weights and integer matmuls (eval of a quantized export)
  std::vector<Buffer<float>> fq;           // [params] fake-quantized weights of the blocks in use
  std::vector<std::vector<int8_t>> level;  // [params] integer mode: the weights' int8 levels
  std::vector<Int8Packed> packed;          // [params] integer mode: them packed for VNNI, or empty
  std::vector<int8_t> xi;                  // integer mode: a linear's int8 input
  std::vector<float> sx;                   // ... and its row scales
  Buffer<float> grad_scratch;  // dL/dq(w) of one weight-gradient product (weight_grads.h)
  bool measure = false;        // add each fake-quantized weight's error to `error` (metrics)
  QuantError error;
};

struct Model {
  ModelConfig cfg;
  TensorSlice slice;   // which part of a tensor-parallel split this rank computes
  ExpertSlice eslice;  // which routed experts this rank holds (all of them on one rank)
  LocalDims dims;
  ParamTable table;                 // this rank's slice of every parameter
  std::vector<float*> unit_params;  // [units] views; by default into the model's own buffers
  std::vector<float*> unit_grads;   // [units]; gradients accumulate (+=) until zeroed
  std::vector<BlockParams> blocks;  // [layers]
  int embed = -1, final_norm = -1, head = -1;  // parameter indices; head = embed when tied
  int embed_unit = 0, head_unit = 0;
  // Completes the partial results of a tensor-parallel split (parallel/tensor/); null when the
  // model runs whole on this rank.
  TensorParallelHook* tp = nullptr;
  // With tp: the norms and the residual stream hold each rank's share of the tokens (a
  // microbatch whose token count tp does not divide runs without it).
  bool sequence_parallel = false;
  // Moves the routed rows of MoE blocks to the ranks holding their experts and back
  // (parallel/expert/); null when this rank holds every expert.
  ExpertParallelHook* ep = nullptr;
  QatState qat;  // inactive unless cfg.qat is on and someone switches it on (model/qat.h)

  // The units this rank holds (a pipeline stage holds its layers' units); the others have no
  // storage and null views. All of them by default.
  std::vector<bool> owned;
  bool owns(int unit) const { return owned[unit]; }

  // Allocates this slice's parameters and gradients (tracked) of the units in `owned` (empty: all)
  // and initialises them from seed per SPEC, each element by its index in the whole tensor.
  Model(const ModelConfig& cfg, uint64_t seed, bool with_grads = true, TensorSlice slice = {},
        std::vector<bool> owned = {}, ExpertSlice experts = {});
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  float* param(int idx) { return unit_params[table.params[idx].unit] + table.params[idx].offset; }
  float* grad(int idx) { return unit_grads[table.params[idx].unit] + table.params[idx].offset; }
  float* param(const std::string& name);
  float* grad(const std::string& name);  // throws when the model has no gradients
  void zero_grads();
  // Frees the buffers the model allocated itself; the caller has taken over unit_params /
  // unit_grads (the ZeRO engine).
  void release_own_storage();

 private:
  std::vector<Buffer<float>> own_params_, own_grads_;
};

}  // namespace zt
